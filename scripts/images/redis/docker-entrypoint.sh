#!/bin/sh
# Mirrors the official redis image's entrypoint (drop to user "redis" when the
# command is redis-server), plus: when no config file is given, start from
# /usr/local/etc/redis/sandbox-defaults.conf ("protected-mode no", the official
# image's compiled default). Later options / stdin override it.
set -e

# first arg is `-f` or `--some-option`, or first arg is `something.conf`
if [ "${1#-}" != "$1" ] || [ "${1%.conf}" != "$1" ]; then
	set -- redis-server "$@"
fi

# allow the container to be started with `--user`
if [ "$1" = 'redis-server' ] && [ "$(id -u)" = '0' ]; then
	find . \! -user redis -exec chown redis '{}' +
	exec gosu redis "$0" "$@"
fi

if [ "$1" = 'redis-server' ]; then
	case "${2:-}" in
		''|-|--*)
			# no config file: options only, or "-" (config on stdin)
			shift
			set -- redis-server /usr/local/etc/redis/sandbox-defaults.conf "$@"
			;;
	esac
fi

# set an appropriate umask (if one isn't set already)
um="$(umask)"
if [ "$um" = '0022' ]; then
	umask 0077
fi

exec "$@"
