#!/usr/bin/env bash
# scripts/sandbox.sh — turn this Debian 12 machine (root, no systemd) into a
# stand-in for the EC2 docker host that ops-action deploys to. Idempotent.
#
#   bash scripts/sandbox.sh [up]      install + start everything, write .sandbox/connection.json
#   bash scripts/sandbox.sh down      stop only the daemons this script started (pid files)
#   bash scripts/sandbox.sh status    show what is running
#   bash scripts/sandbox.sh differences   print how the stand-in images differ
#   bash scripts/sandbox.sh reset-stack   remove what ops-action created (stack, volume, network, ops-dir)
#   bash scripts/sandbox.sh local-action-env   print a .env of INPUT_* lines for `npm run local-action`
#   bash scripts/sandbox.sh stop|start sshd|registry|dockerd   one daemon, for fault-injection tests
#
# What `up` provides (state in <repo>/.sandbox, gitignored):
#   - dockerd (reused if `docker info` works, else started and its pid recorded)
#   - user `deploy` (docker group) + ed25519 keys (one plain, one with passphrase)
#   - sshd on 127.0.0.1:2222 (own config + host key, key auth only)
#   - /opt/behindy-ops owned by deploy, mode 0750
#   - registry (Debian docker-registry) on 127.0.0.1:5000, plain HTTP, htpasswd user `ci`
#   - compose: the v2 plugin (Debian sid's docker-compose 2.40, a static binary) or v1
#   - images postgres:15.10-bookworm, redis:7.4.1-alpine, nginx:1.30.6-alpine
#     (pulled if Docker Hub answers within 20 s, otherwise built locally from
#     scripts/images/* on a debootstrapped Debian bookworm or sid base), and the sample
#     apps, each pushed as 127.0.0.1:5000/behindy/<app>:v1/:v2: sample-frontend (Next.js 16 on
#     Node 24), sample-backend (embedded Tomcat 10.1 on OpenJDK 21), sample-story (FastAPI on
#     uvicorn), and the tiny python sample-app (ops-sandbox/sample-app:latest)
#
# Env knobs: SANDBOX_NO_PULL=1 (don't try Docker Hub), SANDBOX_DEBIAN_MIRROR=<url>,
#   SANDBOX_COMPOSE=v2 (default: the compose v2 plugin, as Docker Engine hosts run it) or v1 (only
#   docker-compose 1.29, as Ubuntu's docker.io hosts run it).
#
# DIFFERENCES between the locally built stand-ins and the official images
# (only relevant when Docker Hub is unreachable; printed by `differences`):
# BEGIN DIFFERENCES
# all stand-ins: Debian bookworm base (glibc, dash as /bin/sh, bash, GNU
#   coreutils/wget) instead of Alpine (musl, busybox) or the official Debian
#   build; so a shell snippet that works here may still fail on busybox.
#   Package versions, sizes and digests differ; single-arch; they carry the
#   label ops-sandbox.build-hash (`status` shows "stand-in").
# postgres:15.10-bookworm -> Debian postgresql-15, bookworm point release
#   (15.18 when written, not 15.10); entrypoint is a reduced rewrite of
#   upstream's docker-entrypoint.sh: POSTGRES_USER/PASSWORD/DB/INITDB_ARGS/
#   HOST_AUTH_METHOD, *_FILE secrets, /docker-entrypoint-initdb.d
#   (*.sh, *.sql, *.sql.gz, *.sql.xz); no POSTGRES_INITDB_WALDIR, no
#   pg_ctl-less "single user" helpers; only the en_US.UTF-8 locale exists;
#   uid/gid 999, PGDATA, STOPSIGNAL SIGINT, PID 1 = postgres as upstream.
# redis:7.4.1-alpine -> Debian redis-server 7.0.15 (no 7.2/7.4 commands, e.g.
#   no hash-field TTLs/HEXPIRE). Upstream compiles "protected-mode no" as the
#   default; here the entrypoint prepends a defaults file with that line when
#   no config file is given (options and "-"/stdin still override it); with a
#   config file that omits protected-mode the stock default "yes" applies
#   (no effect once requirepass is set). Startup log says it loaded a config
#   file. uid/gid 999, WORKDIR /data, privilege drop via gosu as upstream.
# nginx:1.30.6-alpine -> Debian sid's nginx 1.30.6 (glibc, built by Debian's
#   gcc; Debian's module set: no njs, HTTP/3 as Debian builds it). Compiled-in
#   temp paths are /var/lib/nginx/* (owned by nginx; /var/cache/nginx also
#   exists). Entrypoint runs /docker-entrypoint.d/*.sh|*.envsh and renders
#   /etc/nginx/templates/*.template with envsubst, but none of upstream's
#   stock scripts ship (no IPv6 listen auto-add, no worker tuning), so
#   default.conf listens on IPv4 :80 only. nginx.conf/default.conf, user
#   nginx (uid 101), log symlinks, STOPSIGNAL SIGQUIT as upstream; GNU wget
#   instead of busybox's. The stream module (built into upstream's nginx) is
#   Debian's loadable one, loaded from /etc/nginx/modules-enabled/. The
#   "upgrade" nginx:mainline-alpine is the same nginx with another image ID.
# compose -> the v2 plugin is Debian sid's docker-compose 2.40.3 (Docker's
#   own docker-compose-plugin on EC2), driving bookworm's dockerd 20.10
#   (EC2: a current Docker Engine). SANDBOX_COMPOSE=v1: Debian's
#   docker-compose 1.29.2 only.
# sample apps (127.0.0.1:5000/behindy/<app>:v1/v2) -> the project's own small apps in
#   Behindy's frameworks, built from packages, not Behindy's code: sample-frontend is a
#   Next.js 16 standalone app on Debian sid's Node 24 (Behindy: node:20-alpine),
#   sample-backend an embedded Tomcat 10.1 (Spring Boot 3.4's server) on OpenJDK 21 with
#   Spring Boot's graceful shutdown, no Spring, sample-story FastAPI 0.162 on uvicorn 0.53
#   (httptools, uvloop); each runs as uid 1001 with wget, no curl, and has the test hooks
#   (VERSION, STARTUP_DELAY, FAIL_MODE, DRAIN_SECONDS, HEALTH_PATH, /slow, /stats, /env).
#   sample-app: python3 http.server with HTTP/1.1 keep-alive, for the suites that do not
#   need a framework.
# END DIFFERENCES

set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_DIR="$(cd "$SCRIPT_DIR/.." && pwd)"
STATE_DIR="$REPO_DIR/.sandbox"
RUN_DIR="$STATE_DIR/run"
LOG_DIR="$STATE_DIR/log"
IMAGES_DIR="$SCRIPT_DIR/images"

SSH_PORT=2222
SSH_HOST=127.0.0.1
DEPLOY_USER=deploy
OPS_DIR=/opt/behindy-ops
PASSPHRASE=sandbox-pass
REGISTRY=127.0.0.1:5000
REGISTRY_USER=ci
SAMPLE_REPO="$REGISTRY/behindy/sample-app"

PG_IMAGE=postgres:15.10-bookworm
REDIS_IMAGE=redis:7.4.1-alpine
NGINX_IMAGE=nginx:1.30.6-alpine
NGINX_UPGRADE_IMAGE=nginx:mainline-alpine
SAMPLE_IMAGE=ops-sandbox/sample-app:latest
# The sample apps, each pushed as $REGISTRY/behindy/<app>:v1 and :v2: the tiny python one (the suites that do not
# care about the framework) and one per real framework (Next.js, Tomcat, FastAPI on uvicorn).
SAMPLE_APPS="sample-app sample-frontend sample-backend sample-story"
BASE_IMAGE=ops-sandbox/debian:bookworm
# Debian unstable: today's nginx (1.30) and compose v2 (2.40). Its Release file may be past Valid-Until on a mirror.
SID_IMAGE=ops-sandbox/debian:sid
COMPOSE=${SANDBOX_COMPOSE:-v2}
COMPOSE_PLUGIN=/usr/libexec/docker/cli-plugins/docker-compose

# package -> command that proves it (or an equivalent) is already there. On a
# GitHub ubuntu runner docker comes from Docker's own packages (moby/docker-ce),
# and installing docker.io on top would conflict, so probe commands, not dpkg.
PACKAGES=(
  docker.io:dockerd
  docker-compose:docker-compose
  openssh-server:/usr/sbin/sshd
  docker-registry:docker-registry
  apache2-utils:htpasswd
  debootstrap:debootstrap
  curl:curl
)

DOCKER=docker          # replaced by pick_docker_client
HUB_REACHABLE=unknown  # memo: after one failed pull, don't wait 20 s per image

# ---------------------------------------------------------------- helpers --

log()  { printf '\033[1;34m==>\033[0m %s\n' "$*"; }
info() { printf '    %s\n' "$*"; }
warn() { printf '\033[1;33mwarn:\033[0m %s\n' "$*" >&2; }
die()  { printf '\033[1;31merror:\033[0m %s\n' "$*" >&2; exit 1; }

# wait_for <timeout-seconds> <command...> — poll every 0.2 s until it succeeds
wait_for() {
  local timeout="$1"; shift
  local deadline=$((SECONDS + timeout))
  until "$@" >/dev/null 2>&1; do
    if ((SECONDS >= deadline)); then
      return 1
    fi
    sleep 0.2
  done
}

# pid_alive <pidfile>: the recorded process still runs and is the same daemon
# (guards against a stale pid file whose pid got reused by something else)
pid_alive() {
  local pid comm expected
  [[ -f $1 ]] || return 1
  pid="$(cat "$1")"
  [[ $pid =~ ^[0-9]+$ ]] && kill -0 "$pid" 2>/dev/null || return 1
  case "$(basename "$1" .pid)" in
    registry) expected=docker-registry ;;
    *) expected="$(basename "$1" .pid)" ;;
  esac
  comm="$(cat "/proc/$pid/comm" 2>/dev/null)"
  [[ $comm == "$expected" ]]
}

# start_daemon <name> <command...>: background daemon, log + pid in state dir
start_daemon() {
  local name="$1"; shift
  nohup "$@" >>"$LOG_DIR/$name.log" 2>&1 </dev/null &
  echo $! >"$RUN_DIR/$name.pid"
}

stop_daemon() {
  local name="$1" pidfile="$RUN_DIR/$1.pid" pid
  if ! pid_alive "$pidfile"; then
    rm -f "$pidfile"
    info "$name: not running (not started by this script)"
    return 0
  fi
  pid="$(cat "$pidfile")"
  kill "$pid"
  # dockerd stops its containers first (10 s grace each, in parallel)
  for _ in $(seq 1 150); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.2
  done
  if kill -0 "$pid" 2>/dev/null; then
    warn "$name (pid $pid) did not stop in 30 s, sending SIGKILL"
    kill -9 "$pid" 2>/dev/null || true
  fi
  rm -f "$pidfile"
  info "$name: stopped (pid $pid)"
}

require_root() {
  [[ $EUID -eq 0 ]] || die "must run as root (try: sudo bash $0 $*)"
}

# content hash of a directory (file names + contents), for image rebuild checks
dir_hash() {
  (cd "$1" && find . -type f -print0 | LC_ALL=C sort -z | xargs -0 sha256sum) | sha256sum | cut -c1-16
}

# ------------------------------------------------------------- packages --

install_packages() {
  local missing=() entry
  for entry in "${PACKAGES[@]}"; do
    command -v "${entry#*:}" >/dev/null 2>&1 || missing+=("${entry%%:*}")
  done
  # debootstrapping Debian from a non-Debian host (Ubuntu runner) needs Debian's keyring
  if ! host_is_debian && [[ ! -f /usr/share/keyrings/debian-archive-keyring.gpg ]]; then
    missing+=(debian-archive-keyring)
  fi
  if ((${#missing[@]} == 0)); then
    info "packages: all present"
    return 0
  fi
  log "installing packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  # Without systemd, postinst scripts would try (and fail) to start services:
  # forbid that for the duration of the install.
  local policy=/usr/sbin/policy-rc.d had_policy=0
  if [[ -e $policy ]]; then had_policy=1; cp -a "$policy" "$STATE_DIR/policy-rc.d.bak"; fi
  printf '#!/bin/sh\nexit 101\n' >"$policy"; chmod 0755 "$policy"
  local rc=0
  {
    # apt-get update only if the lists are missing or the install fails without it
    if ! compgen -G '/var/lib/apt/lists/*_Packages' >/dev/null; then
      apt-get update -q
    fi
    apt-get install -y -q --no-install-recommends "${missing[@]}" ||
      { apt-get update -q && apt-get install -y -q --no-install-recommends "${missing[@]}"; }
  } || rc=$?
  if ((had_policy)); then mv "$STATE_DIR/policy-rc.d.bak" "$policy"; else rm -f "$policy"; fi
  ((rc == 0)) || die "apt-get install failed for: ${missing[*]}"
}

host_is_debian() { grep -qx 'ID=debian' /etc/os-release 2>/dev/null; }

# --------------------------------------------------------------- docker --

docker_ok() { "$DOCKER" info >/dev/null 2>&1; }

start_docker() {
  DOCKER=/usr/bin/docker
  [[ -x $DOCKER ]] || DOCKER=docker
  if docker_ok || docker info >/dev/null 2>&1; then
    if pid_alive "$RUN_DIR/dockerd.pid"; then
      info "dockerd: running (started by this script, pid $(cat "$RUN_DIR/dockerd.pid"))"
    else
      info "dockerd: running (not managed by this script)"
    fi
  else
    if pgrep -x dockerd >/dev/null; then
      die "a dockerd process exists but 'docker info' fails; check it (socket /var/run/docker.sock, its log) or stop it first"
    fi
    # the socket gets group "docker" only if that group exists at start-up
    getent group docker >/dev/null || groupadd --system docker
    log "starting dockerd (log: $LOG_DIR/dockerd.log)"
    command -v dockerd >/dev/null || die "dockerd not found although docker.io is installed"
    start_daemon dockerd dockerd
    local deadline=$((SECONDS + 60))
    until docker_ok; do
      pid_alive "$RUN_DIR/dockerd.pid" || break   # died: no point in waiting
      ((SECONDS < deadline)) || break
      sleep 0.2
    done
    if ! docker_ok; then
      local why state="did not become ready within 60 s"
      pid_alive "$RUN_DIR/dockerd.pid" || { state="exited"; rm -f "$RUN_DIR/dockerd.pid"; }
      why="$(grep -iE 'level=(fatal|error)|failed to' "$LOG_DIR/dockerd.log" | tail -n 5)"
      die "dockerd $state. Last errors from $LOG_DIR/dockerd.log:
${why:-  (none logged; see the full log)}
Typical causes: no permission for iptables/overlay (run as root on a VM, not in an unprivileged container), or another daemon holding /var/run/docker.pid."
    fi
    info "dockerd: started (pid $(cat "$RUN_DIR/dockerd.pid"))"
  fi
  pick_docker_client
}

# /usr/local/bin/docker (a newer client) may shadow Debian's /usr/bin/docker;
# use whichever is first on PATH if it can talk to this daemon (API negotiation).
pick_docker_client() {
  local first
  first="$(command -v docker)"
  if [[ $first != /usr/bin/docker ]] && "$first" version --format '{{.Server.APIVersion}}' >/dev/null 2>&1; then
    DOCKER="$first"
  elif [[ -x /usr/bin/docker ]]; then
    DOCKER=/usr/bin/docker
  else
    DOCKER="$first"
  fi
  docker_ok || die "docker client $DOCKER cannot talk to the daemon"
  # The legacy builder works with both the 20.10 daemon and newer clients
  # (no buildx plugin needed).
  export DOCKER_BUILDKIT=0
  info "docker client: $DOCKER ($("$DOCKER" version --format 'client {{.Client.Version}}, server {{.Server.Version}}, API {{.Server.APIVersion}}' 2>/dev/null))"
}

# ------------------------------------------------------------ deploy user --

setup_deploy_user() {
  getent group docker >/dev/null || groupadd --system docker
  if ! id "$DEPLOY_USER" >/dev/null 2>&1; then
    log "creating user $DEPLOY_USER"
    useradd --create-home --home-dir "/home/$DEPLOY_USER" --shell /bin/bash --groups docker "$DEPLOY_USER"
  fi
  id -nG "$DEPLOY_USER" | tr ' ' '\n' | grep -qx docker || usermod -aG docker "$DEPLOY_USER"
  # useradd leaves the password locked ("!"), and sshd (UsePAM no) refuses key
  # logins to locked accounts; "*" means "no password" without locking.
  [[ "$(getent shadow "$DEPLOY_USER" | cut -d: -f2)" == '*' ]] || usermod -p '*' "$DEPLOY_USER"

  local keys="$STATE_DIR/keys"
  mkdir -p "$keys"; chmod 0700 "$keys"
  [[ -f $keys/id_ed25519 ]] ||
    ssh-keygen -q -t ed25519 -N '' -C "sandbox-deploy" -f "$keys/id_ed25519"
  [[ -f $keys/id_ed25519_passphrase ]] ||
    ssh-keygen -q -t ed25519 -N "$PASSPHRASE" -C "sandbox-deploy-passphrase" -f "$keys/id_ed25519_passphrase"

  local home="/home/$DEPLOY_USER" ak wanted
  ak="$home/.ssh/authorized_keys"
  wanted="$(cat "$keys/id_ed25519.pub" "$keys/id_ed25519_passphrase.pub")"
  install -d -m 0700 -o "$DEPLOY_USER" -g "$DEPLOY_USER" "$home/.ssh"
  if [[ ! -f $ak ]] || [[ "$(cat "$ak")" != "$wanted" ]]; then
    printf '%s\n' "$wanted" >"$ak"
    info "authorized_keys: written"
  fi
  chown "$DEPLOY_USER:$DEPLOY_USER" "$ak"; chmod 0600 "$ak"
  chmod go-w "$home"

  if [[ ! -d $OPS_DIR ]] || [[ "$(stat -c '%U %a' "$OPS_DIR")" != "$DEPLOY_USER 750" ]]; then
    install -d -m 0750 -o "$DEPLOY_USER" -g "$DEPLOY_USER" "$OPS_DIR"
    info "$OPS_DIR: created/fixed (owner $DEPLOY_USER, 0750)"
  fi
}

# ------------------------------------------------------------------- sshd --

write_if_changed() { # write_if_changed <file> <content>; returns 0 if changed
  if [[ -f $1 ]] && [[ "$(cat "$1")" == "$2" ]]; then return 1; fi
  printf '%s\n' "$2" >"$1"
  return 0
}

setup_sshd() {
  local dir="$STATE_DIR/sshd" changed=0
  mkdir -p "$dir" /run/sshd; chmod 0700 "$dir"; chmod 0755 /run/sshd
  [[ -f $dir/ssh_host_ed25519_key ]] ||
    ssh-keygen -q -t ed25519 -N '' -C "sandbox-host" -f "$dir/ssh_host_ed25519_key"
  local conf
  conf="# generated by scripts/sandbox.sh
Port $SSH_PORT
ListenAddress $SSH_HOST
HostKey $dir/ssh_host_ed25519_key
PidFile $RUN_DIR/sshd.pid
PubkeyAuthentication yes
AuthorizedKeysFile .ssh/authorized_keys
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin no
AllowUsers $DEPLOY_USER
UsePAM no
PrintMotd no
AcceptEnv LANG LC_*
Subsystem sftp internal-sftp
LogLevel VERBOSE"
  write_if_changed "$dir/sshd_config" "$conf" && changed=1
  /usr/sbin/sshd -t -f "$dir/sshd_config" || die "sshd config test failed ($dir/sshd_config)"

  if pid_alive "$RUN_DIR/sshd.pid"; then
    if ((changed)); then
      log "sshd config changed: reloading"
      kill -HUP "$(cat "$RUN_DIR/sshd.pid")"
    fi
  else
    if ss -ltn "sport = :$SSH_PORT" | grep -q LISTEN; then
      die "port $SSH_PORT is taken by another process (not our sshd): $(ss -ltnp "sport = :$SSH_PORT" | tail -n +2)"
    fi
    log "starting sshd on $SSH_HOST:$SSH_PORT"
    # -D: stay in foreground so our pid is the daemon's; -E: log file
    start_daemon sshd /usr/sbin/sshd -D -f "$dir/sshd_config" -E "$LOG_DIR/sshd.log"
    wait_for 10 ss_listening "$SSH_PORT" || die "sshd did not start; see $LOG_DIR/sshd.log"
  fi

  # known_hosts line for clients
  write_if_changed "$STATE_DIR/known_hosts" \
    "$(printf '[%s]:%s %s' "$SSH_HOST" "$SSH_PORT" "$(cut -d' ' -f1,2 "$dir/ssh_host_ed25519_key.pub")")" || true
}

ss_listening() { ss -ltn "sport = :$1" | grep -q LISTEN; }

ssh_deploy() {
  ssh -i "$STATE_DIR/keys/id_ed25519" -p "$SSH_PORT" \
    -o BatchMode=yes -o IdentitiesOnly=yes -o ConnectTimeout=5 \
    -o UserKnownHostsFile="$STATE_DIR/known_hosts" -o StrictHostKeyChecking=yes \
    "$DEPLOY_USER@$SSH_HOST" "$@"
}

check_ssh() {
  local out
  out="$(ssh_deploy 'docker info --format "{{.ServerVersion}}" && test -w '"$OPS_DIR"' && echo ops-writable' 2>&1)" ||
    die "ssh as $DEPLOY_USER failed or it cannot reach docker / write $OPS_DIR:
$out
(see $LOG_DIR/sshd.log)"
  info "ssh $DEPLOY_USER@$SSH_HOST:$SSH_PORT: ok (docker $(head -n1 <<<"$out"), $OPS_DIR writable)"
}

# --------------------------------------------------------------- registry --

setup_registry() {
  local dir="$STATE_DIR/registry" changed=0
  mkdir -p "$dir/data"; chmod 0700 "$dir"
  if [[ ! -s $dir/password ]]; then
    (umask 077; head -c 18 /dev/urandom | base64 | tr '+/' '-_' >"$dir/password")
  fi
  if [[ ! -s $dir/htpasswd ]] || ! htpasswd -vbB "$dir/htpasswd" "$REGISTRY_USER" "$(cat "$dir/password")" >/dev/null 2>&1; then
    htpasswd -Bbn "$REGISTRY_USER" "$(cat "$dir/password")" >"$dir/htpasswd"
    changed=1
  fi
  [[ -s $dir/http-secret ]] || (umask 077; head -c 24 /dev/urandom | base64 >"$dir/http-secret")
  local conf
  conf="# generated by scripts/sandbox.sh
version: 0.1
log:
  level: info
  fields:
    service: registry
storage:
  filesystem:
    rootdirectory: $dir/data
  delete:
    enabled: true
  cache:
    blobdescriptor: inmemory
http:
  addr: $REGISTRY
  secret: $(cat "$dir/http-secret")
  headers:
    X-Content-Type-Options: [nosniff]
auth:
  htpasswd:
    realm: ops-sandbox
    path: $dir/htpasswd
health:
  storagedriver:
    enabled: false"
  write_if_changed "$dir/config.yml" "$conf" && changed=1

  if pid_alive "$RUN_DIR/registry.pid" && ((changed)); then
    log "registry config changed: restarting"
    stop_daemon registry
  fi
  if ! pid_alive "$RUN_DIR/registry.pid"; then
    ss_listening 5000 && die "port 5000 is taken by another process (not our registry)"
    log "starting registry on $REGISTRY"
    start_daemon registry /usr/bin/docker-registry serve "$dir/config.yml"
    wait_for 15 registry_up || die "registry did not start; see $LOG_DIR/registry.log"
  fi
}

registry_up() { [[ "$(curl -s -o /dev/null -w '%{http_code}' "http://$REGISTRY/v2/")" == 401 ]]; }

registry_password() { cat "$STATE_DIR/registry/password"; }

# run docker with a throw-away client config logged in to the registry
with_registry_login() {
  local cfg rc=0
  cfg="$(mktemp -d)"
  DOCKER_CONFIG="$cfg" "$DOCKER" login -u "$REGISTRY_USER" --password-stdin "$REGISTRY" \
    <<<"$(registry_password)" >/dev/null 2>&1 || { rm -rf "$cfg"; return 1; }
  DOCKER_CONFIG="$cfg" "$@" || rc=$?
  DOCKER_CONFIG="$cfg" "$DOCKER" logout "$REGISTRY" >/dev/null 2>&1 || true
  rm -rf "$cfg"
  return "$rc"
}

check_registry_login() {
  with_registry_login true || die "docker login $REGISTRY failed (see $LOG_DIR/registry.log)"
  info "registry $REGISTRY: docker login as $REGISTRY_USER ok"
}

# ----------------------------------------------------------------- images --

image_exists() { "$DOCKER" image inspect "$1" >/dev/null 2>&1; }

image_label() {
  "$DOCKER" image inspect -f "{{ index .Config.Labels \"$2\" }}" "$1" 2>/dev/null || true
}

try_pull() {
  [[ ${SANDBOX_NO_PULL:-0} == 1 || $HUB_REACHABLE == no ]] && return 1
  info "trying: docker pull $1 (20 s limit)"
  if timeout 20 "$DOCKER" pull -q "$1" >/dev/null 2>&1; then
    HUB_REACHABLE=yes
    return 0
  fi
  HUB_REACHABLE=no
  info "pull failed: building stand-ins locally"
  return 1
}

debian_mirror() {
  if [[ -n ${SANDBOX_DEBIAN_MIRROR:-} ]]; then echo "$SANDBOX_DEBIAN_MIRROR"; return; fi
  if ! host_is_debian; then echo "http://deb.debian.org/debian"; return; fi
  local url f
  shopt -s nullglob
  for f in /etc/apt/sources.list.d/*.sources; do
    # deb822: first URIs of a stanza whose Suites contain "bookworm" (not -security)
    url="$(awk 'BEGIN{RS=""} /Suites:[^\n]*bookworm([ \n]|-updates)/ && /Types:[^\n]*deb([ \n]|$)/ {
      if (match($0, /URIs:[ \t]*[^ \t\n]+/)) { s=substr($0,RSTART,RLENGTH); sub(/URIs:[ \t]*/,"",s); print s; exit } }' "$f")"
    [[ -n $url ]] && break
  done
  if [[ -z $url ]]; then
    for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
      [[ -f $f ]] || continue
      url="$(awk '$1=="deb" && $0 !~ /security/ { for (i=2;i<=NF;i++) if ($i ~ /^(https?|ftp):/) { print $i; exit } }' "$f")"
      [[ -n $url ]] && break
    done
  fi
  shopt -u nullglob
  echo "${url:-http://deb.debian.org/debian}"
}

# ensure_base_image [suite]: a minbase debootstrap of Debian <suite> (bookworm, sid) imported as ops-sandbox/debian:<suite>
ensure_base_image() {
  local suite="${1:-bookworm}" image="ops-sandbox/debian:${1:-bookworm}"
  image_exists "$image" && return 0
  local tarball="$STATE_DIR/cache/debian-$suite-minbase.tar" mirror
  mirror="$(debian_mirror)"
  if [[ ! -s $tarball ]]; then
    log "debootstrap $suite (minbase) from $mirror (~30 s)"
    local root="$STATE_DIR/cache/rootfs-$suite"
    mkdir -p "$STATE_DIR/cache"
    rm -rf "$root"
    local keyring=()
    host_is_debian || keyring=(--keyring=/usr/share/keyrings/debian-archive-keyring.gpg)
    debootstrap "${keyring[@]}" --variant=minbase "$suite" "$root" "$mirror" >"$LOG_DIR/debootstrap-$suite.log" 2>&1 ||
      die "debootstrap $suite failed; see $LOG_DIR/debootstrap-$suite.log"
    # Like the old docker "mkimage" tweaks: no service starts, no docs, slim apt.
    printf '#!/bin/sh\nexit 101\n' >"$root/usr/sbin/policy-rc.d"; chmod 0755 "$root/usr/sbin/policy-rc.d"
    if [[ $suite == bookworm ]]; then
      printf 'deb %s bookworm main\ndeb %s bookworm-updates main\n' "$mirror" "$mirror" >"$root/etc/apt/sources.list"
    else
      printf 'deb %s %s main\n' "$mirror" "$suite" >"$root/etc/apt/sources.list"
      printf 'Acquire::Check-Valid-Until "false";\n' >"$root/etc/apt/apt.conf.d/90-sandbox-valid-until"
    fi
    printf 'APT::Install-Recommends "false";\nAPT::Install-Suggests "false";\n' >"$root/etc/apt/apt.conf.d/90-sandbox-norecommends"
    printf 'path-exclude /usr/share/doc/*\npath-include /usr/share/doc/*/copyright\npath-exclude /usr/share/man/*\npath-exclude /usr/share/locale/*\npath-include /usr/share/locale/locale.alias\n' \
      >"$root/etc/dpkg/dpkg.cfg.d/90-sandbox-nodoc"
    rm -rf "${root:?}"/var/cache/apt/archives/*.deb "${root:?}"/var/lib/apt/lists/* "${root:?}"/dev/* "${root:?}"/proc/* "${root:?}"/sys/*
    tar --numeric-owner -C "$root" -cf "$tarball.tmp" . && mv "$tarball.tmp" "$tarball"
    rm -rf "$root"
  fi
  log "importing $image from $tarball"
  "$DOCKER" import -c 'CMD ["bash"]' -c 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    "$tarball" "$image" >/dev/null
}

# sid_apt ARGS...: apt-get against Debian sid with a state of its own under .sandbox (the host's apt is untouched).
sid_apt() {
  local d="$STATE_DIR/apt-sid"
  mkdir -p "$d/lists/partial" "$d/cache/archives/partial"
  printf 'deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] %s sid main\n' "$(debian_mirror)" >"$d/sources.list"
  apt-get -q -o Dir::Etc::SourceList="$d/sources.list" -o Dir::Etc::SourceParts=/dev/null -o Dir::State::Lists="$d/lists" \
    -o Dir::Cache="$d/cache" -o Acquire::Check-Valid-Until=false -o APT::Get::List-Cleanup=0 "$@"
}

# The compose v2 plugin (SANDBOX_COMPOSE=v2, the default) from sid's docker-compose package, or none (v1).
setup_compose() {
  local d
  if [[ $COMPOSE == v1 ]]; then
    [[ -f $COMPOSE_PLUGIN.ops-sandbox ]] && rm -f "$COMPOSE_PLUGIN" "$COMPOSE_PLUGIN.ops-sandbox"
    # A plugin this script did not install (Docker's packages on a GitHub runner) is set aside, and put back for v2.
    for d in /usr/libexec/docker/cli-plugins /usr/local/lib/docker/cli-plugins /usr/lib/docker/cli-plugins; do
      [[ -e $d/docker-compose ]] && mv "$d/docker-compose" "$d/docker-compose.ops-sandbox-off"
    done
    docker compose version >/dev/null 2>&1 && die "SANDBOX_COMPOSE=v1, but a compose v2 plugin still answers 'docker compose': remove it"
    info "compose: v1 only ($(docker-compose version --short))"
    return 0
  fi
  [[ $COMPOSE == v2 ]] || die "SANDBOX_COMPOSE must be v1 or v2 (got '$COMPOSE')"
  for d in /usr/libexec/docker/cli-plugins /usr/local/lib/docker/cli-plugins /usr/lib/docker/cli-plugins; do
    [[ -e $d/docker-compose.ops-sandbox-off && ! -e $d/docker-compose ]] && mv "$d/docker-compose.ops-sandbox-off" "$d/docker-compose"
  done
  if ! docker compose version >/dev/null 2>&1; then
    local deb="$STATE_DIR/cache/docker-compose-sid.deb" x="$STATE_DIR/cache/docker-compose-sid"
    if [[ ! -s $deb ]]; then
      log "fetching docker-compose (v2) from Debian sid"
      mkdir -p "$STATE_DIR/cache"
      sid_apt update >"$LOG_DIR/apt-sid.log" 2>&1 || die "apt-get update for sid failed (log: $LOG_DIR/apt-sid.log)"
      (cd "$STATE_DIR/cache" && sid_apt download docker-compose >>"$LOG_DIR/apt-sid.log" 2>&1) ||
        die "downloading docker-compose from sid failed (log: $LOG_DIR/apt-sid.log)"
      mv "$STATE_DIR"/cache/docker-compose_*.deb "$deb"
    fi
    rm -rf "$x" && dpkg-deb -x "$deb" "$x"
    install -D -m 0755 "$x/usr/libexec/docker/cli-plugins/docker-compose" "$COMPOSE_PLUGIN"
    touch "$COMPOSE_PLUGIN.ops-sandbox"
    rm -rf "$x"
  fi
  info "compose: v2 plugin $(docker compose version --short) (docker-compose $(docker-compose version --short 2>/dev/null || echo absent) stays as v1)"
}

# build_context <dir>: the docker build context of an image dir: the dir itself, or, for a Node app (package.json and
# build.sh: the Next.js app, built on the host with its npm, as a CI runner builds an image's app), a cached
# dir with the Dockerfile and build.sh's output in app/, made again when the source changed. Prints its path.
build_context() {
  local dir="$1"
  [[ -f $dir/build.sh && -f $dir/package.json ]] || { echo "$dir"; return 0; }
  local ctx="$STATE_DIR/cache/context-$(basename "$dir")" src name
  src="$(dir_hash "$dir")"
  name="$(basename "$dir")"
  if [[ "$(cat "$ctx/.source-hash" 2>/dev/null)" != "$src" ]]; then
    log "building $name with its build.sh (npm ci, build)" >&2
    rm -rf "$ctx" && mkdir -p "$ctx"
    bash "$dir/build.sh" "$ctx/app" >"$LOG_DIR/build-$name-context.log" 2>&1 ||
      { tail -n 30 "$LOG_DIR/build-$name-context.log" >&2; die "build.sh of $name failed (log: $LOG_DIR/build-$name-context.log)"; }
    cp "$dir/Dockerfile" "$ctx/Dockerfile"
    echo "$src" >"$ctx/.source-hash"
  fi
  echo "$ctx"
}

# build_image <tag> <dir> [build-args...]: rebuild only if the dir hash changed
build_image() {
  local tag="$1" dir="$2"; shift 2
  local hash
  hash="$(printf '%s %s' "$(dir_hash "$dir")" "$*" | sha256sum | cut -c1-16)"
  if [[ "$(image_label "$tag" ops-sandbox.build-hash)" == "$hash" ]]; then
    info "$tag: up to date (built locally, hash $hash)"
    return 0
  fi
  ensure_base_image "$(sed -n 's|^FROM ops-sandbox/debian:\([a-z]*\).*|\1|p' "$dir/Dockerfile" | head -n 1)"
  local ctx
  ctx="$(build_context "$dir")"
  log "building $tag from ${dir#"$REPO_DIR"/}"
  local args=() a
  for a in "$@"; do args+=(--build-arg "$a"); done
  "$DOCKER" build -q --label "ops-sandbox.build-hash=$hash" "${args[@]}" -t "$tag" "$ctx" \
    >"$LOG_DIR/build-${tag//[\/:]/_}.log" 2>&1 ||
    { tail -n 30 "$LOG_DIR/build-${tag//[\/:]/_}.log" >&2; die "docker build of $tag failed (log: $LOG_DIR/build-${tag//[\/:]/_}.log)"; }
}

# ensure_service_image <tag> <dir>: keep a pulled official image, else pull, else build
ensure_service_image() {
  local tag="$1" dir="$2"
  if image_exists "$tag" && [[ -z "$(image_label "$tag" ops-sandbox.build-hash)" ]]; then
    info "$tag: present (official image)"
    return 0
  fi
  if ! image_exists "$tag" && try_pull "$tag"; then
    info "$tag: pulled from Docker Hub"
    return 0
  fi
  build_image "$tag" "$dir"
}

ensure_images() {
  ensure_service_image "$PG_IMAGE" "$IMAGES_DIR/postgres"
  ensure_service_image "$REDIS_IMAGE" "$IMAGES_DIR/redis"
  ensure_service_image "$NGINX_IMAGE" "$IMAGES_DIR/nginx"
  ensure_upgrade_image "$NGINX_IMAGE" "$NGINX_UPGRADE_IMAGE"

  local app v
  for app in $SAMPLE_APPS; do
    for v in v1 v2; do
      build_image "ops-sandbox/$app:$v" "$IMAGES_DIR/$app" "VERSION=$v"
      push_sample "$app" "$v"
    done
  done
  tag_if_needed "ops-sandbox/sample-app:v1" "$SAMPLE_IMAGE"
}

# ensure_upgrade_image <from> <tag>: an image of the same software under another ID (an "upgrade" for the e2e tests)
ensure_upgrade_image() {
  local from="$1" tag="$2" id
  id="$(image_id "$from")"
  [[ "$(image_label "$tag" ops-sandbox.upgrade-of)" == "$id" ]] && { info "$tag: up to date (upgrade of $from)"; return 0; }
  log "building $tag (as $from, another image ID)"
  printf 'FROM %s\nLABEL ops-sandbox.upgrade-of=%s\n' "$from" "$id" | "$DOCKER" build -q -t "$tag" - >/dev/null
}

image_id() { "$DOCKER" image inspect -f '{{.Id}}' "$1" 2>/dev/null; }

tag_if_needed() {
  [[ "$(image_id "$1")" == "$(image_id "$2" || true)" ]] || "$DOCKER" tag "$1" "$2"
}

# push_sample <app> <version>: push ops-sandbox/<app>:<v> as $REGISTRY/behindy/<app>:<v> unless already there
push_sample() {
  local app="$1" v="$2" id marker="$STATE_DIR/registry/pushed-$1-$2" code repo="$REGISTRY/behindy/$1"
  id="$(image_id "ops-sandbox/$app:$v")"
  code="$(curl -s -o /dev/null -w '%{http_code}' -u "$REGISTRY_USER:$(registry_password)" \
    -H 'Accept: application/vnd.docker.distribution.manifest.v2+json' \
    "http://$REGISTRY/v2/behindy/$app/manifests/$v")"
  if [[ $code == 200 && -f $marker && "$(cat "$marker")" == "$id" ]]; then
    info "$repo:$v: already in registry"
    return 0
  fi
  log "pushing $repo:$v"
  tag_if_needed "ops-sandbox/$app:$v" "$repo:$v"
  with_registry_login "$DOCKER" push -q "$repo:$v" >"$LOG_DIR/push-$app-$v.log" 2>&1 ||
    die "push of $repo:$v failed (log: $LOG_DIR/push-$app-$v.log)"
  echo "$id" >"$marker"
}

# ------------------------------------------------------------ connection --

write_connection_json() {
  local fp known json
  fp="$(ssh-keygen -lf "$STATE_DIR/sshd/ssh_host_ed25519_key.pub" | awk '{print $2}')"
  known="$(cat "$STATE_DIR/known_hosts")"
  json="$(node -e '
    const [host, port, user, key, pkey, pass, known, fp, reg, ruser, rpass, ops, pg, redis, nginx, app, nginxUpgrade] = process.argv.slice(1);
    process.stdout.write(JSON.stringify({
      host, port: Number(port), username: user, keyPath: key, passphraseKeyPath: pkey,
      passphrase: pass, knownHostsLine: known, fingerprint: fp, registry: reg,
      registryUsername: ruser, registryPassword: rpass, opsDir: ops,
      images: { postgres: pg, redis, nginx, nginxUpgrade, sampleApp: app,
        apps: { frontend: app.replace(/sample-app$/, "sample-frontend"), backend: app.replace(/sample-app$/, "sample-backend"),
          story: app.replace(/sample-app$/, "sample-story") } },
    }, null, 2));' \
    "$SSH_HOST" "$SSH_PORT" "$DEPLOY_USER" "$STATE_DIR/keys/id_ed25519" "$STATE_DIR/keys/id_ed25519_passphrase" \
    "$PASSPHRASE" "$known" "$fp" "$REGISTRY" "$REGISTRY_USER" "$(registry_password)" "$OPS_DIR" \
    "$PG_IMAGE" "$REDIS_IMAGE" "$NGINX_IMAGE" "$SAMPLE_REPO" "$NGINX_UPGRADE_IMAGE")"
  if write_if_changed "$STATE_DIR/connection.json" "$json"; then
    info "wrote $STATE_DIR/connection.json"
  fi
  hand_over_to_invoker
}

# Under sudo (GitHub runner), let the calling user read the client keys and
# connection.json, so tests need not run as root.
hand_over_to_invoker() {
  [[ -n ${SUDO_UID:-} && ${SUDO_UID} != 0 ]] || return 0
  chown "$SUDO_UID:${SUDO_GID:-$SUDO_UID}" "$STATE_DIR/keys" "$STATE_DIR"/keys/* \
    "$STATE_DIR/connection.json" "$STATE_DIR/known_hosts"
}

# --------------------------------------------------------------- commands --

cmd_up() {
  require_root up
  local t0=$SECONDS
  mkdir -p "$STATE_DIR" "$RUN_DIR" "$LOG_DIR"
  command -v node >/dev/null || die "node is required (to write connection.json)"
  log "sandbox up (state: $STATE_DIR)"
  install_packages
  start_docker
  setup_compose
  setup_deploy_user
  setup_sshd
  check_ssh
  setup_registry
  check_registry_login
  ensure_images
  write_connection_json
  log "sandbox ready in $((SECONDS - t0)) s"
  cat <<EOF
    ssh:       ssh -i $STATE_DIR/keys/id_ed25519 -p $SSH_PORT -o UserKnownHostsFile=$STATE_DIR/known_hosts $DEPLOY_USER@$SSH_HOST
    registry:  $REGISTRY (user $REGISTRY_USER, password in $STATE_DIR/registry/password)
    images:    $PG_IMAGE, $REDIS_IMAGE, $NGINX_IMAGE, $REGISTRY/behindy/{${SAMPLE_APPS// /,}}:{v1,v2}
    details:   $STATE_DIR/connection.json
EOF
}

cmd_down() {
  require_root down
  log "stopping daemons started by this script"
  stop_daemon registry
  stop_daemon sshd
  if [[ -f $RUN_DIR/dockerd.pid ]]; then
    stop_daemon dockerd
  else
    info "dockerd: not started by this script, left running"
  fi
}

show() { # show <name> <pidfile> <probe-description> <probe...>
  local name="$1" pidfile="$2" what="$3"; shift 3
  local owner="external"
  pid_alive "$pidfile" && owner="pid $(cat "$pidfile"), started by sandbox.sh"
  if "$@" >/dev/null 2>&1; then
    printf '  %-9s \033[32mup\033[0m    %-22s (%s)\n' "$name" "$what" "$owner"
  else
    printf '  %-9s \033[31mdown\033[0m  %-22s\n' "$name" "$what"
  fi
}

cmd_status() {
  log "sandbox status"
  show dockerd "$RUN_DIR/dockerd.pid" "/var/run/docker.sock" docker info
  show sshd "$RUN_DIR/sshd.pid" "$SSH_HOST:$SSH_PORT" ss_listening "$SSH_PORT"
  show registry "$RUN_DIR/registry.pid" "$REGISTRY" registry_up
  if docker info >/dev/null 2>&1; then
    local img
    local app sample=()
    for app in $SAMPLE_APPS; do sample+=("$REGISTRY/behindy/$app:v1" "$REGISTRY/behindy/$app:v2"); done
    for img in "$PG_IMAGE" "$REDIS_IMAGE" "$NGINX_IMAGE" "$SAMPLE_IMAGE" "${sample[@]}"; do
      if docker image inspect "$img" >/dev/null 2>&1; then
        local kind="official"
        [[ -n "$(docker image inspect -f '{{ index .Config.Labels "ops-sandbox.build-hash" }}' "$img" 2>/dev/null)" ]] && kind="stand-in"
        printf '  image     %-40s %s\n' "$img" "$kind"
      else
        printf '  image     %-40s missing\n' "$img"
      fi
    done
  fi
  [[ -f $STATE_DIR/connection.json ]] && info "connection: $STATE_DIR/connection.json"
  return 0
}

cmd_differences() {
  sed -n '/^# BEGIN DIFFERENCES$/,/^# END DIFFERENCES$/{/^# \(BEGIN\|END\) DIFFERENCES$/d;s/^# \{0,1\}//;p}' "${BASH_SOURCE[0]}"
}

# Wipes what ops-action's infra mode creates on the host (stack containers, the pgdata volume, the network, ops-dir
# and app containers on the network), so the next run meets a fresh EC2 host. The sandbox services stay up.
cmd_reset_stack() {
  local ops_dir=${OPS_DIR:-/opt/behindy-ops} network=${OPS_NETWORK:-internal} ids
  ids="$(docker ps -aq --filter label=com.docker.compose.project=behindy) $(docker ps -aq --filter label=ops-action.service)"
  # shellcheck disable=SC2086
  [[ -n "${ids// /}" ]] && docker rm -f -v $ids >/dev/null
  docker volume rm behindy_pgdata >/dev/null 2>&1 || true
  docker network rm "$network" >/dev/null 2>&1 || true
  rm -rf "$ops_dir"
  install -d -o deploy -g deploy -m 0750 "$ops_dir"
}

# Stops or starts one sandbox daemon (the fault-injection tests make the host lose sshd, the registry or dockerd).
# sshd's running sessions survive a stop, as on a real host; dockerd stops its containers and restarts them (restart
# policies) when it comes back.
cmd_daemon() {
  local action="$1" name="$2"
  require_root "$action"
  mkdir -p "$STATE_DIR" "$RUN_DIR" "$LOG_DIR"
  case "$action:$name" in
    stop:sshd|stop:registry) stop_daemon "$name" ;;
    start:sshd) setup_sshd ;;
    start:registry) setup_registry ;;
    stop:dockerd)
      if [[ -f $RUN_DIR/dockerd.pid ]]; then stop_daemon dockerd
      elif command -v systemctl >/dev/null && systemctl is-active --quiet docker; then systemctl stop docker.socket docker
      else die "dockerd was not started by this script and there is no systemd unit to stop"
      fi ;;
    start:dockerd)
      if [[ ! -f $RUN_DIR/dockerd.pid ]] && command -v systemctl >/dev/null && systemctl cat docker >/dev/null 2>&1; then systemctl start docker
      else start_docker
      fi ;;
    *) die "usage: sandbox.sh stop|start sshd|registry|dockerd (got '$action ${name:-}')" ;;
  esac
}

# Prints a .env for `npm run local-action` (GitHub's local runner): the sandbox's connection as INPUT_* lines, mode
# status unless MODE is set. dotenv reads the multi-line key in double quotes.
cmd_local_action_env() {
  [[ -f $STATE_DIR/connection.json ]] || die "no $STATE_DIR/connection.json: run 'sandbox.sh up' first"
  node -e '
    const c = JSON.parse(require("fs").readFileSync(process.argv[1], "utf8"))
    const key = require("fs").readFileSync(c.keyPath, "utf8").trim()
    const lines = {
      MODE: process.env.MODE || "status", HOST: c.host, PORT: c.port, USERNAME: c.username,
      "SSH-KEY": key, "KNOWN-HOSTS": c.knownHostsLine, "OPS-DIR": c.opsDir
    }
    for (const [k, v] of Object.entries(lines)) console.log(`INPUT_${k}="${String(v)}"`)
  ' "$STATE_DIR/connection.json"
}

main() {
  local cmd="${1:-up}"
  case "$cmd" in
    up) cmd_up ;;
    down) cmd_down ;;
    status) cmd_status ;;
    differences) cmd_differences ;;
    reset-stack) cmd_reset_stack ;;
    local-action-env) cmd_local_action_env ;;
    stop|start) cmd_daemon "$cmd" "${2:-}" ;;
    -h|--help|help) sed -n '2,10p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' ;;
    *) die "unknown command '$cmd' (use: up | down | status | differences | reset-stack | local-action-env | stop|start <daemon>)" ;;
  esac
}

if [[ "${BASH_SOURCE[0]}" == "$0" ]]; then main "$@"; fi
