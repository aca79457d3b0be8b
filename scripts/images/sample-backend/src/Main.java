// ops-sandbox sample backend: a servlet on embedded Apache Tomcat 10.1 (Spring Boot 3.4's default server), no Spring.
//
// The contract of the sandbox's sample apps (the same for frontend, backend and story):
// env PORT (8080), VERSION (dev), STARTUP_DELAY (s before listening, 0), HEALTH_PATH (/health),
// FAIL_MODE (never-healthy | exit | wrong-port | route-5xx), DRAIN_SECONDS (graceful shutdown cap, 10; 0 = halt at
// once on SIGTERM, an app that does not drain).
// Routes (any method): HEALTH_PATH; .../stats (TCP connections accepted, requests served); .../slow?s=N (sleep N s,
// 1, at most 60); .../env?name=K (that variable's value); anything else echoes version, path and hostname. Never 404.
// Keep-alive is Tomcat's own (NIO connector defaults). SIGTERM does what Spring Boot's server.shutdown=graceful does:
// pause the connector and close its server socket, wait for active requests, stop Tomcat, exit 0.
import java.io.IOException;
import java.io.InputStream;
import java.io.PrintStream;
import java.net.URLDecoder;
import java.nio.channels.SocketChannel;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.LocalDateTime;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.concurrent.atomic.AtomicLong;
import java.util.logging.Handler;
import java.util.logging.Level;
import java.util.logging.LogManager;
import java.util.logging.LogRecord;
import java.util.logging.Logger;

import jakarta.servlet.http.HttpServlet;
import jakarta.servlet.http.HttpServletRequest;
import jakarta.servlet.http.HttpServletResponse;

import org.apache.catalina.Container;
import org.apache.catalina.Context;
import org.apache.catalina.LifecycleState;
import org.apache.catalina.Wrapper;
import org.apache.catalina.connector.Connector;
import org.apache.catalina.core.StandardContext;
import org.apache.catalina.core.StandardWrapper;
import org.apache.catalina.startup.Tomcat;
import org.apache.coyote.http11.Http11NioProtocol;
import org.apache.tomcat.util.modeler.Registry;
import org.apache.tomcat.util.net.NioEndpoint;

public final class Main {
    static final String VERSION = env("VERSION", "dev");
    static final int PORT = Integer.parseInt(env("PORT", "8080"));
    static final double STARTUP_DELAY = Double.parseDouble(env("STARTUP_DELAY", "0"));
    static final String HEALTH_PATH = env("HEALTH_PATH", "/health");
    static final String FAIL_MODE = env("FAIL_MODE", "");
    static final double DRAIN_SECONDS = Double.parseDouble(env("DRAIN_SECONDS", "10"));
    static final String HOSTNAME = hostname();

    /** TCP connections the connector accepted since start, counted in the NIO endpoint's accept path. */
    static final AtomicLong CONNECTIONS = new AtomicLong();
    static final AtomicLong REQUESTS = new AtomicLong();
    static final AtomicInteger IN_FLIGHT = new AtomicInteger();

    static final Object LOCK = new Object();
    static boolean stopRequested; // guarded by LOCK
    static Tomcat tomcat;         // guarded by LOCK, set once Tomcat has started

    static String env(String name, String dflt) {
        String v = System.getenv(name);
        return v == null || v.trim().isEmpty() ? dflt : v.trim();
    }

    static String hostname() {
        for (String f : new String[] {"/proc/sys/kernel/hostname", "/etc/hostname"}) {
            try {
                String h = Files.readString(Path.of(f)).trim();
                if (!h.isEmpty()) return h;
            } catch (IOException | RuntimeException e) {
                // try the next source
            }
        }
        String h = System.getenv("HOSTNAME");
        if (h != null && !h.isEmpty()) return h;
        try {
            return java.net.InetAddress.getLocalHost().getHostName();
        } catch (IOException e) {
            return "unknown";
        }
    }

    static final PrintStream OUT = System.out;

    static void log(String msg) {
        // Local time as yyyy-MM-ddTHH:mm:ss, without java.time's formatter (which costs boot time).
        LocalDateTime t = LocalDateTime.now();
        String line = t.getYear() + "-" + two(t.getMonthValue()) + "-" + two(t.getDayOfMonth()) + "T" + two(t.getHour())
                + ":" + two(t.getMinute()) + ":" + two(t.getSecond()) + " sample-backend[" + VERSION + "] " + msg;
        synchronized (OUT) {
            OUT.println(line);
            OUT.flush();
        }
    }

    static String two(int n) {
        return n < 10 ? "0" + n : Integer.toString(n);
    }

    public static void main(String[] args) {
        try {
            run(args);
        } catch (Throwable e) {
            log("fatal: " + e);
            e.printStackTrace(OUT);
            OUT.flush();
            Runtime.getRuntime().halt(1); // not System.exit: the shutdown hook would make it 0
        }
    }

    static void run(String[] args) throws Exception {
        // Tomcat logs through java.util.logging: one line per record on stdout, kept alive through shutdown.
        System.setProperty("java.util.logging.manager", Logs.class.getName());
        Logs.setup();

        // SIGTERM (and SIGINT, SIGHUP) run the JVM's shutdown hooks, as for a Spring Boot app.
        Runtime.getRuntime().addShutdownHook(new Thread(Main::shutdown, "graceful-shutdown"));

        if (FAIL_MODE.equals("exit")) {
            log("FAIL_MODE=exit: exiting with status 1");
            Runtime.getRuntime().halt(1);
        }
        long delayed = 0;
        if (STARTUP_DELAY > 0) {
            log("starting in " + fmt(STARTUP_DELAY) + "s");
            long d0 = System.nanoTime();
            Thread.sleep((long) (STARTUP_DELAY * 1000)); // a SIGTERM meanwhile: shutdown() exits 0
            delayed = (System.nanoTime() - d0) / 1_000_000;
        }
        long t0 = System.nanoTime();
        boolean train = args.length > 0 && args[0].equals("--train");
        int port = train ? 0 : FAIL_MODE.equals("wrong-port") ? PORT + 1 : PORT;
        synchronized (LOCK) {
            if (stopRequested) return;
            tomcat = start(port);
            if (tomcat == null) {
                Runtime.getRuntime().halt(1);
            }
        }
        long tomcatMs = (System.nanoTime() - t0) / 1_000_000;
        if (port == 0) port = tomcat.getConnector().getLocalPort();
        long bootMs = processAgeMillis();
        log("listening on 0.0.0.0:" + port + " (version " + VERSION + ", health " + HEALTH_PATH + ", fail mode "
                + (FAIL_MODE.isEmpty() ? "none" : FAIL_MODE) + ", drain " + fmt(DRAIN_SECONDS) + "s); boot " + (bootMs - delayed)
                + " ms from process start" + (delayed > 0 ? " less the startup delay" : "") + " (Tomcat start " + tomcatMs
                + " ms)");
        if (train) {
            train(port);
            System.exit(0);
        }
        new CountDownLatch(1).await(); // Tomcat's threads are daemons: keep the JVM up until the shutdown hook
    }

    /**
     * The training run of build.sh (--train, on a free port): a few requests of each kind on one kept-alive connection,
     * so that a class-data-sharing archive dumped at exit holds the classes that serving them loads.
     */
    static void train(int port) throws IOException {
        String[] reqs = {
            "GET " + HEALTH_PATH + " HTTP/1.1\r\nHost: x\r\n\r\n",
            "GET /api/x?y=1 HTTP/1.1\r\nHost: x\r\n\r\n",
            "POST /api/x HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}",
            "GET /slow?s=0 HTTP/1.1\r\nHost: x\r\n\r\n",
            "GET /env?name=PATH HTTP/1.1\r\nHost: x\r\n\r\n",
            "HEAD /stats HTTP/1.1\r\nHost: x\r\n\r\n",
            "GET /stats HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        };
        try (java.net.Socket sock = new java.net.Socket("127.0.0.1", port)) {
            sock.setSoTimeout(10_000);
            for (String r : reqs) sock.getOutputStream().write(r.getBytes(StandardCharsets.US_ASCII));
            byte[] all = sock.getInputStream().readAllBytes(); // until the server closes, after Connection: close
            String text = new String(all, StandardCharsets.UTF_8);
            int n = text.split("HTTP/1.1 200 ", -1).length - 1;
            log("training run: " + n + " of " + reqs.length + " responses 200");
            if (n != reqs.length) throw new IOException("training run: unexpected responses: " + text);
        }
    }

    /** How long this process has run: /proc/uptime less the start time in /proc/self/stat (10 ms resolution). */
    static long processAgeMillis() {
        try {
            String stat = Files.readString(Path.of("/proc/self/stat"));
            String[] f = stat.substring(stat.lastIndexOf(')') + 2).split(" ");
            long startTicks = Long.parseLong(f[19]); // field 22 of stat, counted from field 3
            double uptime = Double.parseDouble(Files.readString(Path.of("/proc/uptime")).split(" ")[0]);
            return Math.round(uptime * 1000 - startTicks * 10.0); // USER_HZ is 100 on Linux
        } catch (IOException | RuntimeException e) {
            return -1;
        }
    }

    static String fmt(double d) {
        return d == Math.rint(d) ? Long.toString((long) d) : Double.toString(d);
    }

    /** Builds and starts Tomcat as Spring Boot's TomcatServletWebServerFactory does, minus what a servlet needs not. */
    @SuppressWarnings("deprecation")
    static Tomcat start(int port) throws Exception {
        // As Spring Boot (server.tomcat.mbeanregistry.enabled=false): no JMX MBeans, which would cost ~0.4 s of boot.
        Registry.disableRegistry();
        // Tomcat's base and work directory, under java.io.tmpdir as Spring Boot puts it.
        Path base = Path.of(System.getProperty("java.io.tmpdir"), "tomcat." + port + "." + ProcessHandle.current().pid());
        Files.createDirectories(base);
        Tomcat t = new Tomcat();
        t.setBaseDir(base.toString());
        Connector connector = new Connector(new Http11NioProtocol(new CountingEndpoint()));
        connector.setPort(port);
        connector.setThrowOnFailure(true);
        // As Spring Boot: bind in start(), not init(), so that closeServerSocketGraceful() can close the socket.
        connector.setProperty("bindOnInit", "false");
        connector.setURIEncoding("UTF-8");
        t.getService().addConnector(connector);
        t.setConnector(connector);
        t.getHost().setAutoDeploy(false);
        Context ctx = t.addContext("", null);
        ctx.setParentClassLoader(Main.class.getClassLoader());
        ctx.setIgnoreAnnotations(true); // no @Resource etc. to look for on the servlet
        // As Spring Boot: no memory leak protection that needs --add-opens (it only warns at stop without them).
        StandardContext sc = (StandardContext) ctx;
        sc.setClearReferencesObjectStreamClassCaches(false);
        sc.setClearReferencesRmiTargets(false);
        sc.setClearReferencesThreadLocals(false);
        Wrapper w = Tomcat.addServlet(ctx, "app", new App());
        w.setLoadOnStartup(1);
        ctx.addServletMappingDecoded("/", "app"); // deprecated in late 10.1.x for addServletMapping, absent before
        try {
            t.start();
        } catch (Exception e) {
            Throwable root = e;
            while (root.getCause() != null) root = root.getCause();
            log("failed to start Tomcat on port " + port + ": " + e.getMessage() + (root != e ? " (" + root + ")" : ""));
            return null;
        }
        if (connector.getState() != LifecycleState.STARTED) {
            log("connector on port " + port + " failed to start (" + connector.getState() + ")");
            return null;
        }
        return t;
    }

    /** The NIO endpoint with a count of the sockets its acceptor hands on. */
    static final class CountingEndpoint extends NioEndpoint {
        @Override
        protected boolean setSocketOptions(SocketChannel socket) {
            CONNECTIONS.incrementAndGet();
            return super.setSocketOptions(socket);
        }
    }

    /**
     * The JVM shutdown hook: Spring Boot's graceful shutdown of Tomcat, then Tomcat's stop, then exit status 0 (by
     * halt: the JVM would otherwise exit 143 after a SIGTERM, as a Spring Boot app does).
     */
    static void shutdown() {
        if (DRAIN_SECONDS <= 0) {
            log("shutting down, DRAIN_SECONDS=0: halting at once (" + IN_FLIGHT.get() + " request(s) in flight)");
            // Close the listening socket first, so that new connections are refused at once: the JVM's exit then takes
            // ~0.3 s more (it waits that long for threads in native code: Tomcat's poller in epoll_wait).
            Tomcat t;
            synchronized (LOCK) {
                t = tomcat;
            }
            if (t != null) t.getConnector().getProtocolHandler().closeServerSocketGraceful();
            Runtime.getRuntime().halt(0);
        }
        try {
            drainAndStop();
        } finally {
            log("bye");
            Runtime.getRuntime().halt(0);
        }
    }

    static void drainAndStop() {
        Tomcat t;
        synchronized (LOCK) {
            stopRequested = true;
            t = tomcat;
        }
        if (t == null) {
            log("stopped before listening");
            return;
        }
        log("commencing graceful shutdown, waiting for active requests to complete (" + IN_FLIGHT.get()
                + " in flight, at most " + fmt(DRAIN_SECONDS) + "s)");
        for (Connector c : t.getService().findConnectors()) {
            c.pause();
            c.getProtocolHandler().closeServerSocketGraceful();
        }
        long deadline = System.nanoTime() + (long) (DRAIN_SECONDS * 1e9);
        boolean active;
        try {
            while ((active = isActive(t)) && System.nanoTime() < deadline) {
                Thread.sleep(50);
            }
        } catch (InterruptedException e) {
            active = true;
        }
        if (active) {
            // Spring Boot would go on to stop Tomcat, which waits up to 2 s more (the context's unloadDelay) for the
            // requests still running. Here DRAIN_SECONDS caps it: exit now, cutting them off (connections closed).
            log("graceful shutdown aborted with " + IN_FLIGHT.get() + " request(s) still active after "
                    + fmt(DRAIN_SECONDS) + "s: exiting without waiting for them");
            return;
        }
        log("graceful shutdown complete");
        try {
            t.stop();
            t.destroy();
        } catch (Exception e) {
            log("stopping Tomcat failed: " + e);
        }
    }

    /** As Spring Boot's GracefulShutdown.isActive: async requests in progress or servlet instances allocated. */
    static boolean isActive(Tomcat t) {
        for (Container host : t.getEngine().findChildren()) {
            for (Container context : host.findChildren()) {
                if (((StandardContext) context).getInProgressAsyncCount() > 0) return true;
                for (Container wrapper : context.findChildren()) {
                    if (((StandardWrapper) wrapper).getCountAllocated() > 0) return true;
                }
            }
        }
        return false;
    }

    static final class App extends HttpServlet {
        @Override
        protected void service(HttpServletRequest req, HttpServletResponse resp) throws IOException {
            REQUESTS.incrementAndGet();
            IN_FLIGHT.incrementAndGet();
            try {
                handle(req, resp);
            } finally {
                IN_FLIGHT.decrementAndGet();
            }
        }

        private void handle(HttpServletRequest req, HttpServletResponse resp) throws IOException {
            // Read what was sent, so that a kept-alive connection stays in step.
            try (InputStream in = req.getInputStream()) {
                byte[] buf = new byte[8192];
                while (in.read(buf) >= 0) {
                    // discard
                }
            }
            String path = req.getRequestURI();
            String trimmed = path.endsWith("/") && path.length() > 1 ? path.substring(0, path.length() - 1) : path;
            String last = trimmed.substring(trimmed.lastIndexOf('/') + 1);
            if (path.equals(HEALTH_PATH)) {
                if (FAIL_MODE.equals("never-healthy")) {
                    reply(resp, 500, json("status", "unhealthy", "version", VERSION));
                } else {
                    reply(resp, 200, json("status", "ok", "version", VERSION));
                }
                return;
            }
            if (last.equals("stats")) {
                reply(resp, 200, json("version", VERSION, "connections", CONNECTIONS.get(),
                        "requests", REQUESTS.get()));
                return;
            }
            if (last.equals("slow")) {
                double s;
                try {
                    String q = query(req, "s");
                    s = q == null ? 1 : Double.parseDouble(q);
                    if (Double.isNaN(s)) s = 1;
                } catch (NumberFormatException e) {
                    s = 1;
                }
                s = Math.max(0, Math.min(60, s));
                try {
                    Thread.sleep((long) (s * 1000));
                } catch (InterruptedException e) {
                    Thread.currentThread().interrupt();
                }
            }
            if (FAIL_MODE.equals("route-5xx")) {
                reply(resp, 500, json("error", "route-5xx", "version", VERSION, "path", path));
                return;
            }
            if (last.equals("env")) {
                String name = query(req, "name");
                if (name == null) name = "";
                reply(resp, 200, json("name", name, "value", name.isEmpty() ? null : System.getenv(name)));
                return;
            }
            reply(resp, 200, json("version", VERSION, "path", path, "hostname", HOSTNAME));
        }

        /** A query parameter, from the query string only (never from a form body). */
        private static String query(HttpServletRequest req, String name) {
            String qs = req.getQueryString();
            if (qs == null) return null;
            for (String pair : qs.split("&")) {
                int eq = pair.indexOf('=');
                String k = eq < 0 ? pair : pair.substring(0, eq);
                try {
                    if (URLDecoder.decode(k, StandardCharsets.UTF_8).equals(name)) {
                        return eq < 0 ? "" : URLDecoder.decode(pair.substring(eq + 1), StandardCharsets.UTF_8);
                    }
                } catch (IllegalArgumentException e) {
                    // a malformed escape: not this one
                }
            }
            return null;
        }

        private static void reply(HttpServletResponse resp, int status, String body) throws IOException {
            byte[] data = (body + "\n").getBytes(StandardCharsets.UTF_8);
            resp.setStatus(status);
            resp.setContentType("application/json");
            resp.setHeader("X-App-Version", VERSION);
            resp.setContentLength(data.length);
            resp.getOutputStream().write(data);
        }
    }

    /** A JSON object from name/value pairs: values are strings, numbers or null. */
    static String json(Object... kv) {
        StringBuilder sb = new StringBuilder("{");
        for (int i = 0; i < kv.length; i += 2) {
            if (i > 0) sb.append(',');
            quote(sb, (String) kv[i]);
            sb.append(':');
            Object v = kv[i + 1];
            if (v == null) sb.append("null");
            else if (v instanceof Number) sb.append(v);
            else quote(sb, v.toString());
        }
        return sb.append('}').toString();
    }

    static void quote(StringBuilder sb, String s) {
        sb.append('"');
        for (int i = 0; i < s.length(); i++) {
            char c = s.charAt(i);
            switch (c) {
                case '"': sb.append("\\\""); break;
                case '\\': sb.append("\\\\"); break;
                case '\n': sb.append("\\n"); break;
                case '\r': sb.append("\\r"); break;
                case '\t': sb.append("\\t"); break;
                default:
                    if (c < 0x20) sb.append("\\u00").append(Character.forDigit(c >> 4, 16)).append(Character.forDigit(c & 15, 16));
                    else sb.append(c);
            }
        }
        sb.append('"');
    }

    /**
     * The java.util.logging manager: Tomcat's records go to stdout, one line each. Its reset() is a no-op once the JVM
     * shuts down, so that what Tomcat logs while it stops is still printed (the JDK's own LogManager closes every handler
     * in a shutdown hook of its own, which runs alongside ours).
     */
    public static final class Logs extends LogManager {
        private volatile boolean ready;

        static void setup() {
            LogManager m = LogManager.getLogManager();
            Logger root = Logger.getLogger("");
            for (Handler h : root.getHandlers()) root.removeHandler(h);
            root.addHandler(new Handler() {
                @Override
                public void publish(LogRecord r) {
                    if (!isLoggable(r)) return;
                    String msg = r.getMessage();
                    if (r.getParameters() != null && msg != null && msg.contains("{")) {
                        msg = java.text.MessageFormat.format(msg, r.getParameters());
                    }
                    String name = r.getLoggerName() == null ? "" : r.getLoggerName();
                    String line = "tomcat " + r.getLevel() + " " + name.substring(name.lastIndexOf('.') + 1) + ": " + msg;
                    log(line);
                    if (r.getThrown() != null) {
                        java.io.StringWriter sw = new java.io.StringWriter();
                        r.getThrown().printStackTrace(new java.io.PrintWriter(sw));
                        synchronized (OUT) {
                            OUT.print(sw);
                            OUT.flush();
                        }
                    }
                }

                @Override
                public void flush() {
                }

                @Override
                public void close() {
                }
            });
            root.setLevel(Level.INFO);
            if (m instanceof Logs) ((Logs) m).ready = true;
        }

        @Override
        public void reset() {
            if (!ready) super.reset();
        }
    }
}
