#!/usr/bin/env bash
# Reduced re-implementation of the official postgres image's docker-entrypoint.sh.
# Honours POSTGRES_USER, POSTGRES_PASSWORD, POSTGRES_DB, POSTGRES_INITDB_ARGS,
# POSTGRES_HOST_AUTH_METHOD (and the *_FILE variants), PGDATA and
# /docker-entrypoint-initdb.d/*.{sh,sql,sql.gz}.
set -Eeo pipefail

# usage: file_env VAR [DEFAULT] -- lets VAR_FILE=/run/secrets/x provide VAR
file_env() {
	local var="$1" fileVar="${1}_FILE" def="${2:-}"
	if [ "${!var:-}" ] && [ "${!fileVar:-}" ]; then
		echo >&2 "error: both $var and $fileVar are set (but are exclusive)"
		exit 1
	fi
	local val="$def"
	if [ "${!var:-}" ]; then
		val="${!var}"
	elif [ "${!fileVar:-}" ]; then
		val="$(< "${!fileVar}")"
	fi
	export "$var"="$val"
	unset "$fileVar"
}

setup_env() {
	file_env 'POSTGRES_PASSWORD'
	file_env 'POSTGRES_USER' 'postgres'
	file_env 'POSTGRES_DB' "$POSTGRES_USER"
	file_env 'POSTGRES_INITDB_ARGS'
	: "${POSTGRES_HOST_AUTH_METHOD:=}"
	export PGDATA="${PGDATA:-/var/lib/postgresql/data}"
}

verify_minimum_env() {
	if [ -z "$POSTGRES_PASSWORD" ] && [ 'trust' != "$POSTGRES_HOST_AUTH_METHOD" ]; then
		cat >&2 <<-'EOE'
			Error: Database is uninitialized and superuser password is not specified.
			       You must specify POSTGRES_PASSWORD to a non-empty value for the
			       superuser. For example, "-e POSTGRES_PASSWORD=password" on "docker run".

			       You may also use "POSTGRES_HOST_AUTH_METHOD=trust" to allow all
			       connections without a password. This is *not* recommended.
		EOE
		exit 1
	fi
}

create_db_directories() {
	mkdir -p "$PGDATA"
	chmod 00700 "$PGDATA" || :
	mkdir -p /var/run/postgresql || :
	chmod 03775 /var/run/postgresql || :
	if [ "$(id -u)" = '0' ]; then
		find "$PGDATA" \! -user postgres -exec chown postgres '{}' +
		find /var/run/postgresql \! -user postgres -exec chown postgres '{}' +
	fi
}

init_database_dir() {
	# eval: POSTGRES_INITDB_ARGS is word-split on purpose (as upstream does)
	if [ -n "$POSTGRES_PASSWORD" ]; then
		eval 'initdb --username="$POSTGRES_USER" --pwfile=<(printf "%s\n" "$POSTGRES_PASSWORD") '"$POSTGRES_INITDB_ARGS"
	else
		eval 'initdb --username="$POSTGRES_USER" '"$POSTGRES_INITDB_ARGS"
	fi
}

setup_hba_conf() {
	local method="${POSTGRES_HOST_AUTH_METHOD:-scram-sha-256}"
	{
		printf '\n'
		if [ 'trust' = "$method" ]; then
			printf '# warning trust is enabled for all connections\n'
		fi
		printf 'host all all all %s\n' "$method"
	} >> "$PGDATA/pg_hba.conf"
}

temp_server_start() {
	PGUSER="$POSTGRES_USER" pg_ctl -D "$PGDATA" \
		-o "-c listen_addresses='' -p ${PGPORT:-5432}" -w start
}

temp_server_stop() {
	PGUSER="$POSTGRES_USER" pg_ctl -D "$PGDATA" -m fast -w stop
}

psql_run() {
	PGHOST="" PGHOSTADDR="" PGPASSWORD="$POSTGRES_PASSWORD" \
		psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --no-password --no-psqlrc "$@"
}

setup_db() {
	local exists
	# variables are only interpolated in SQL read from stdin, not with -c
	exists="$(psql_run --dbname postgres --set db="$POSTGRES_DB" --tuples-only <<-'EOSQL'
		SELECT 1 FROM pg_database WHERE datname = :'db' ;
	EOSQL
	)"
	if [ -z "${exists//[[:space:]]/}" ]; then
		psql_run --dbname postgres --set db="$POSTGRES_DB" <<-'EOSQL'
			CREATE DATABASE :"db" ;
		EOSQL
		echo
	fi
}

process_init_files() {
	local f
	for f in /docker-entrypoint-initdb.d/*; do
		case "$f" in
			*.sh)     echo "$0: running $f"; if [ -x "$f" ]; then "$f"; else . "$f"; fi ;;
			*.sql)    echo "$0: running $f"; psql_run --dbname "$POSTGRES_DB" -f "$f"; echo ;;
			*.sql.gz) echo "$0: running $f"; gunzip -c "$f" | psql_run --dbname "$POSTGRES_DB"; echo ;;
			*.sql.xz) echo "$0: running $f"; xzcat "$f" | psql_run --dbname "$POSTGRES_DB"; echo ;;
			*/\*)     ;;  # empty directory
			*)        echo "$0: ignoring $f" ;;
		esac
	done
}

want_help() {
	local arg
	for arg; do
		case "$arg" in
			-'?'|--help|--describe-config|-V|--version) return 0 ;;
		esac
	done
	return 1
}

main() {
	if [ "${1:0:1}" = '-' ]; then
		set -- postgres "$@"
	fi

	if [ "$1" = 'postgres' ] && ! want_help "$@"; then
		setup_env
		create_db_directories
		if [ "$(id -u)" = '0' ]; then
			# restart this script as the postgres user
			exec gosu postgres "${BASH_SOURCE[0]}" "$@"
		fi

		if [ ! -s "$PGDATA/PG_VERSION" ]; then
			verify_minimum_env
			init_database_dir
			setup_hba_conf
			export PGPASSWORD="${PGPASSWORD:-$POSTGRES_PASSWORD}"
			temp_server_start
			setup_db
			process_init_files
			temp_server_stop
			unset PGPASSWORD
			echo
			echo 'PostgreSQL init process complete; ready for start up.'
			echo
		else
			echo
			echo 'PostgreSQL Database directory appears to contain a database; Skipping initialization'
			echo
		fi
	fi

	exec "$@"
}

main "$@"
