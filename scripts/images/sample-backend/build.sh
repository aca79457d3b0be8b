#!/bin/sh
# Builds the sample backend: build.sh OUTDIR [JAR_DIR=/usr/share/java]
# Compiles src/*.java against the Tomcat 10.1 jars in JAR_DIR (Debian's libtomcat10-java) and lays out a self-contained
# runtime in OUTDIR:
#   OUTDIR/app.jar         the app (Main-Class: Main, manifest Class-Path: the lib/ jars, so `java -jar` works too)
#   OUTDIR/lib/*.jar       copies of the Tomcat jars the app needs at run time (symlinks resolved)
#   OUTDIR/classpath       the runtime classpath, relative to OUTDIR, one line (app.jar:lib/...)
#   OUTDIR/entrypoint.sh   the container's CMD
#   OUTDIR/app.jsa         a class-data-sharing archive from a training run (the app on a free loopback port, a few
#                          requests, exit), which entrypoint.sh uses; CDS=0 skips it (a failed run fails the build,
#                          as the app would not start either). It only serves the same JVM build
#                          at the same OUTDIR path with the same jars: build where the runtime will have the app (e.g.
#                          build.sh /app in the build stage, COPY --from=build /app /app), with the runtime's JDK build.
# so a runtime stage needs only a JRE (17 or later) and OUTDIR. Needs javac and jar (a JDK 17 or later).
set -eu

usage() { echo "usage: $0 OUTDIR [JAR_DIR=/usr/share/java]" >&2; exit 2; }
[ $# -ge 1 ] || usage
OUT=$1
JAR_DIR=${2:-/usr/share/java}
HERE=$(cd "$(dirname "$0")" && pwd)

# What Main needs at run time, each found missing by running without it: Tomcat (catalina), the HTTP connector
# (coyote), tomcat-util, util-scan (the context's descriptor classes and JarScanner), juli (logging), tomcat-api, the
# Servlet 6.0 API, the JASPIC API (the context's authentication set-up) and the annotations API (jakarta.annotation,
# which Tomcat's instance manager looks for). Names as libtomcat10-java ships them (symlinks to NAME-10.1.x.jar).
JARS="tomcat10-catalina.jar tomcat10-coyote.jar tomcat10-util.jar tomcat10-util-scan.jar tomcat10-juli.jar
tomcat10-api.jar tomcat10-servlet-api.jar tomcat10-jaspic-api.jar tomcat10-annotations-api.jar"

missing=
for j in $JARS; do [ -f "$JAR_DIR/$j" ] || missing="$missing $j"; done
if [ -n "$missing" ]; then
  echo "build.sh: missing in $JAR_DIR:$missing (install libtomcat10-java)" >&2
  exit 1
fi

CP=
for j in $JARS; do CP="${CP:+$CP:}$JAR_DIR/$j"; done

mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
TMP=$(mktemp -d "${TMPDIR:-/tmp}/sample-backend-build.XXXXXX")
trap 'rm -rf "$TMP"' EXIT INT TERM


# -XDstringConcat=inline: plain StringBuilder code for "a" + b, not invokedynamic (whose bootstrap costs boot time).
javac --release 17 -encoding UTF-8 -Xlint:deprecation -XDstringConcat=inline -cp "$CP" -d "$TMP/classes" "$HERE"/src/*.java

rm -rf "$OUT/lib"
mkdir -p "$OUT/lib"
RUNTIME_CP=app.jar
MANIFEST_CP=
for j in $JARS; do
  cp -L "$JAR_DIR/$j" "$OUT/lib/$j"
  RUNTIME_CP="$RUNTIME_CP:lib/$j"
  MANIFEST_CP="${MANIFEST_CP:+$MANIFEST_CP }lib/$j"
done

{
  echo "Main-Class: Main"
  # Manifest lines are at most 72 bytes: continuation lines start with a space.
  printf 'Class-Path: %s\n' "$MANIFEST_CP" | fold -w 70 | sed '2,$s/^/ /'
} > "$TMP/manifest.txt"
rm -f "$OUT/app.jar"
jar --create --file "$OUT/app.jar" --manifest "$TMP/manifest.txt" -C "$TMP/classes" .

echo "$RUNTIME_CP" > "$OUT/classpath"
cp "$HERE/entrypoint.sh" "$OUT/entrypoint.sh"
chmod 0755 "$OUT/entrypoint.sh"
chmod 0644 "$OUT/app.jar" "$OUT/classpath" "$OUT"/lib/*.jar

rm -f "$OUT/app.jsa"
if [ "${CDS:-1}" != 0 ]; then
  if JAVA_OPTS="-XX:ArchiveClassesAtExit=$OUT/app.jsa" VERSION=train "$OUT/entrypoint.sh" --train > "$TMP/train.log" 2>&1 \
      && [ -s "$OUT/app.jsa" ]; then
    chmod 0644 "$OUT/app.jsa"
    echo "build.sh: $(grep -o 'training run: .*' "$TMP/train.log"); CDS archive $OUT/app.jsa"
  else
    rm -f "$OUT/app.jsa"
    cat "$TMP/train.log" >&2
    echo "build.sh: the training run failed (log above): the app does not start. CDS=0 skips the run." >&2
    exit 1
  fi
fi

echo "built $OUT/app.jar against $JAR_DIR; classpath: $RUNTIME_CP"
