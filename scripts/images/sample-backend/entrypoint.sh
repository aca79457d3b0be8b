#!/bin/sh
# Container CMD of the sample backend: runs Main from the directory build.sh laid out (this script's own).
# The app reads the test hooks itself: PORT, VERSION, STARTUP_DELAY, HEALTH_PATH, FAIL_MODE, DRAIN_SECONDS.
# JAVA_OPTS is added after the flags below (a later flag wins). Arguments go to Main (build.sh passes --train).
set -eu
APP_DIR=$(cd "$(dirname "$0")" && pwd)
CP=
for e in $(tr ':' ' ' < "$APP_DIR/classpath"); do CP="${CP:+$CP:}$APP_DIR/$e"; done
# The class-data-sharing archive of build.sh's training run, when there is one: the app's classes come parsed and
# verified from it (about a third less CPU to boot). A JVM of another build, or a changed jar, makes the JVM print one
# warning and boot without it.
CDS=
if [ -f "$APP_DIR/app.jsa" ]; then CDS="-XX:SharedArchiveFile=$APP_DIR/app.jsa"; fi
# Small-container flags: serial GC, C1 only (faster boot, less memory), 512 KiB thread stacks, heap from the cgroup
# limit, no hsperfdata file in /tmp.
# shellcheck disable=SC2086
exec java \
  -XX:+UseSerialGC \
  -XX:TieredStopAtLevel=1 \
  -Xss512k \
  -XX:MaxRAMPercentage=75 \
  -XX:-UsePerfData \
  -Xshare:auto $CDS \
  ${JAVA_OPTS:-} \
  -cp "$CP" Main "$@"
