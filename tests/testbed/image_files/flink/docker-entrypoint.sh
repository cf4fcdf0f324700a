#!/bin/bash
# The entry point of the bed's Flink 2.3 image (built by tests/testbed/images.py), equivalent to the
# official image's /docker-entrypoint.sh for what Kubernetes deployments use:
#
#   jobmanager [-Dkey=value ...]       a session cluster's JobManager (StandaloneSessionClusterEntrypoint)
#   taskmanager [-Dkey=value ...]      a TaskManager (TaskManagerRunner)
#   standalone-job [ARGS ...]          an application cluster's JobManager
#                                      (StandaloneApplicationClusterEntryPoint; ARGS as for Flink's
#                                      standalone-job.sh: --job-classname, --fromSavepoint, ...,
#                                      the job's jar in /opt/flink/usrlib/ or given by -Dpipeline.jars)
#   help                               this text
#   anything else                      run as a command
#
# Before starting a Flink process it edits conf/config.yaml, when that is writable, as the official
# image does: jobmanager.rpc.address from JOB_MANAGER_RPC_ADDRESS (else the pod's hostname),
# blob.server.port 6124 and query.server.port 6125, taskmanager.numberOfTaskSlots from
# TASK_MANAGER_NUMBER_OF_TASK_SLOTS, one `key: value` per line of FLINK_PROPERTIES, then ${VAR}
# substitution (envsubst). Keys are edited as flat keys (`a.b.c: v`). There are no bin/*.sh
# scripts (the jars come from PyPI's apache-flink-libraries): this script computes the JVM's memory
# flags with Flink's BashJavaUtils as those scripts do, and runs `java` itself, in the foreground,
# logging to the console (conf/log4j-console.properties) and to log/.
set -eu -o pipefail

FLINK_HOME=${FLINK_HOME:-/opt/flink}
CONF_DIR=${FLINK_CONF_DIR:-$FLINK_HOME/conf}
CONF_FILE=$CONF_DIR/config.yaml
LOG_DIR=${FLINK_LOG_DIR:-$FLINK_HOME/log}

# What Flink's scripts pass to every JVM on Java 17 (env.java.default-opts.all).
JAVA17_OPTS=(
  --add-exports=java.base/sun.net.util=ALL-UNNAMED
  --add-exports=java.rmi/sun.rmi.registry=ALL-UNNAMED
  --add-exports=java.security.jgss/sun.security.krb5=ALL-UNNAMED
  --add-opens=java.base/java.lang=ALL-UNNAMED
  --add-opens=java.base/java.net=ALL-UNNAMED
  --add-opens=java.base/java.io=ALL-UNNAMED
  --add-opens=java.base/java.nio=ALL-UNNAMED
  --add-opens=java.base/sun.nio.ch=ALL-UNNAMED
  --add-opens=java.base/java.lang.reflect=ALL-UNNAMED
  --add-opens=java.base/java.text=ALL-UNNAMED
  --add-opens=java.base/java.time=ALL-UNNAMED
  --add-opens=java.base/java.util=ALL-UNNAMED
  --add-opens=java.base/java.util.concurrent=ALL-UNNAMED
  --add-opens=java.base/java.util.concurrent.atomic=ALL-UNNAMED
  --add-opens=java.base/java.util.concurrent.locks=ALL-UNNAMED
)

say() { echo "docker-entrypoint: $*" >&2; }

# set_config_option KEY VALUE: replaces KEY's line in config.yaml, or appends it.
set_config_option() {
  local key=$1 value=$2 tmp
  tmp=$CONF_FILE.entrypoint.tmp
  grep -v -E "^[[:space:]]*${key//./\\.}[[:space:]]*:" "$CONF_FILE" >"$tmp" || true
  printf '%s: %s\n' "$key" "$value" >>"$tmp"
  cat "$tmp" >"$CONF_FILE"
  rm -f "$tmp"
}

# read_config_option KEY: the value of a flat KEY in config.yaml, or nothing.
read_config_option() {
  local key=$1
  [ -r "$CONF_FILE" ] || return 0
  grep -E "^[[:space:]]*${key//./\\.}[[:space:]]*:" "$CONF_FILE" | tail -n 1 \
    | sed -E "s/^[^:]*:[[:space:]]*//; s/[[:space:]]+$//; s/^\"(.*)\"$/\\1/; s/^'(.*)'$/\\1/" || true
}

prepare_configuration() {
  if [ ! -e "$CONF_FILE" ] || [ ! -w "$CONF_FILE" ] || [ ! -w "$CONF_DIR" ]; then
    say "$CONF_FILE is read-only: using it as it is"
    return 0
  fi
  set_config_option jobmanager.rpc.address "${JOB_MANAGER_RPC_ADDRESS:-${HOSTNAME:-localhost}}"
  set_config_option blob.server.port 6124
  set_config_option query.server.port 6125
  if [ -n "${TASK_MANAGER_NUMBER_OF_TASK_SLOTS:-}" ]; then
    set_config_option taskmanager.numberOfTaskSlots "$TASK_MANAGER_NUMBER_OF_TASK_SLOTS"
  fi
  if [ -n "${FLINK_PROPERTIES:-}" ]; then
    local line key value
    while IFS= read -r line; do
      [[ "$line" =~ ^[[:space:]]*([^#:[:space:]][^:]*):[[:space:]]*(.*)$ ]] || continue
      key=${BASH_REMATCH[1]%"${BASH_REMATCH[1]##*[![:space:]]}"}
      value=${BASH_REMATCH[2]}
      set_config_option "$key" "$value"
    done <<<"$FLINK_PROPERTIES"
  fi
  if command -v envsubst >/dev/null 2>&1; then
    envsubst <"$CONF_FILE" >"$CONF_FILE.entrypoint.tmp"
    cat "$CONF_FILE.entrypoint.tmp" >"$CONF_FILE"
    rm -f "$CONF_FILE.entrypoint.tmp"
  fi
}

# The -D arguments among "$@" (what BashJavaUtils understands besides --configDir).
dynamic_args() {
  local arg
  for arg in "$@"; do
    case "$arg" in -D*=*) printf '%s\n' "$arg" ;; esac
  done
}

# resource_params COMMAND ARGS...: runs BashJavaUtils as Flink's scripts do and sets JVM_PARAMS and
# DYNAMIC_CONFIGS (arrays) from its last two result lines.
resource_params() {
  local command=$1
  shift
  local output
  local -a dyn
  mapfile -t dyn < <(dynamic_args "$@")
  if ! output=$(java -Xmx128m -XX:+UseSerialGC -XX:TieredStopAtLevel=1 \
      -classpath "$FLINK_HOME/bin/bash-java-utils.jar:$FLINK_HOME/lib/*" \
      org.apache.flink.runtime.util.bash.BashJavaUtils "$command" --configDir "$CONF_DIR" "${dyn[@]}" 2>&1); then
    say "BashJavaUtils $command failed:"
    echo "$output" >&2
    exit 1
  fi
  local -a results
  mapfile -t results < <(echo "$output" | sed -n 's/^BASH_JAVA_UTILS_EXEC_RESULT://p')
  if [ "${#results[@]}" -lt 2 ]; then
    say "BashJavaUtils $command gave no result:"
    echo "$output" >&2
    exit 1
  fi
  read -r -a JVM_PARAMS <<<"${results[-2]}"
  read -r -a DYNAMIC_CONFIGS <<<"${results[-1]}"
}

# run_flink ROLE MAIN_CLASS ARGS...: the JVM in the foreground (exec, so it gets the signals).
run_flink() {
  local role=$1 main=$2
  shift 2
  local -a opts
  read -r -a opts <<<"$(read_config_option env.java.opts.all) $(read_config_option "env.java.opts.$role") ${FLINK_ENV_JAVA_OPTS:-}"
  local classpath="$FLINK_HOME/lib/*"
  if [ -d "$FLINK_HOME/usrlib" ]; then classpath="$classpath:$FLINK_HOME/usrlib/*"; fi
  local log_file="$LOG_DIR/flink--$role-${HOSTNAME:-localhost}.log"
  mkdir -p "$LOG_DIR" 2>/dev/null || true
  say "starting $role ($main)"
  exec java "${JAVA17_OPTS[@]}" "${JVM_PARAMS[@]}" "${opts[@]}" \
    -Dlog.file="$log_file" \
    -Dlog4j.configuration="file:$CONF_DIR/log4j-console.properties" \
    -Dlog4j.configurationFile="file:$CONF_DIR/log4j-console.properties" \
    -Dlogback.configurationFile="file:$CONF_DIR/logback-console.xml" \
    -classpath "$classpath" "$main" --configDir "$CONF_DIR" "$@"
}

JVM_PARAMS=()
DYNAMIC_CONFIGS=()
case "${1:-help}" in
  jobmanager)
    shift
    prepare_configuration
    resource_params GET_JM_RESOURCE_PARAMS "$@"
    run_flink jobmanager org.apache.flink.runtime.entrypoint.StandaloneSessionClusterEntrypoint \
      --executionMode cluster "${DYNAMIC_CONFIGS[@]}" "$@"
    ;;
  standalone-job)
    shift
    prepare_configuration
    resource_params GET_JM_RESOURCE_PARAMS "$@"
    run_flink standalonejob org.apache.flink.container.entrypoint.StandaloneApplicationClusterEntryPoint \
      "${DYNAMIC_CONFIGS[@]}" "$@"
    ;;
  taskmanager)
    shift
    prepare_configuration
    resource_params GET_TM_RESOURCE_PARAMS "$@"
    run_flink taskmanager org.apache.flink.runtime.taskexecutor.TaskManagerRunner "${DYNAMIC_CONFIGS[@]}" "$@"
    ;;
  help | --help | -h)
    sed -n '2,22p' "$0" | sed 's/^# \{0,1\}//'
    ;;
  *)
    exec "$@"
    ;;
esac
