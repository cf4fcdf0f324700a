#!/usr/bin/env bash
# `make e2e-kind`: flinkop in a real cluster, end to end, for people with a Docker engine.
#
#   1. creates a kind cluster (its own kubeconfig in a temporary directory; ~/.kube is not touched)
#   2. builds the operator image from the Dockerfile and loads it into the cluster
#   3. installs `kubectl apply -k deploy/` (CRD, RBAC, operator) and the Flink session cluster of
#      deploy/flink-session/ with its example-jars server (through tests/e2e/kind/, which makes the
#      savepoint volume ReadWriteOnce: kind's storage has no ReadWriteMany)
#   4. applies deploy/samples/session-state-machine.yaml and waits until it is Ready
#   5. changes its args, which upgrades it through a savepoint, and waits until it is Ready at the
#      new generation, running a new job restored from that savepoint
#   6. prints the status, deletes the FlinkJob (final savepoint, finalizer released)
#   7. deletes the kind cluster, also on failure or Ctrl-C (KEEP_CLUSTER=1 keeps it for a look)
#
# Needs docker (with a running engine and about 4 GiB of memory for the node), kind and kubectl on
# PATH, and network access to pull the flink, python and kind node images. Not run by `make test`:
# the project's own machines have no Docker engine, so this script has never run there.
#
# Settings (environment): KIND_CLUSTER_NAME (flinkop-e2e), KIND_NODE_IMAGE (kind's default),
# E2E_TIMEOUT seconds for each wait (600), KEEP_CLUSTER=1.
set -Eeuo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
CLUSTER=${KIND_CLUSTER_NAME:-flinkop-e2e}
TIMEOUT=${E2E_TIMEOUT:-600}
KEEP_CLUSTER=${KEEP_CLUSTER:-0}
OPERATOR_IMAGE=flinkop:0.1.0                 # what deploy/operator.yaml runs
FLINK_IMAGE=flink:2.3.0-scala_2.12-java17    # what deploy/flink-session/ runs
SERVER_IMAGE=python:3.11-slim                # the example-jars server (and the operator's base)
SAMPLE=$REPO/deploy/samples/session-state-machine.yaml
JOB=state-machine
NS=flinkop-e2e
UPGRADED_ARGS='["--rps","100"]'

say() { printf '[e2e-kind %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { say "FAILED: $*"; exit 1; }

# --- what must be there ----------------------------------------------------------------------------
missing=()
command -v docker >/dev/null 2>&1 || missing+=("docker   https://docs.docker.com/engine/install/")
command -v kind >/dev/null 2>&1 || missing+=("kind     https://kind.sigs.k8s.io/docs/user/quick-start/#installation")
command -v kubectl >/dev/null 2>&1 || missing+=("kubectl  https://kubernetes.io/docs/tasks/tools/")
if ((${#missing[@]})); then
    say "make e2e-kind needs docker (with a running engine), kind and kubectl on PATH. Missing:"
    printf '    %s\n' "${missing[@]}" >&2
    exit 2
fi
if ! docker info >/dev/null 2>&1; then
    say "docker is installed but no Docker engine answers ('docker info' fails). Start the engine"
    say "(or point DOCKER_HOST at one) and run make e2e-kind again."
    exit 2
fi
grep -q "image: ${OPERATOR_IMAGE}\$" "$REPO/deploy/operator.yaml" \
    || die "deploy/operator.yaml does not run ${OPERATOR_IMAGE}; update OPERATOR_IMAGE in $0"
if kind get clusters 2>/dev/null | grep -qx "$CLUSTER"; then
    die "a kind cluster named $CLUSTER exists already: delete it (kind delete cluster --name $CLUSTER) or set KIND_CLUSTER_NAME"
fi

started=$SECONDS

diagnostics() {
    say "diagnostics:"
    kubectl get pods -A -o wide || true
    kubectl get flinkjobs -A -o yaml || true
    kubectl -n "$NS" get events --sort-by=.lastTimestamp || true
    kubectl -n flinkop-system logs deploy/flinkop --tail=80 || true
    kubectl -n flink logs deploy/flink-jobmanager --tail=80 || true
}

cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    if ((rc != 0)); then
        diagnostics >&2
    fi
    if [[ $KEEP_CLUSTER == 1 ]]; then
        say "KEEP_CLUSTER=1: kind cluster $CLUSTER kept; KUBECONFIG=$KUBECONFIG"
        say "delete it with: kind delete cluster --name $CLUSTER"
    else
        say "deleting kind cluster $CLUSTER"
        kind delete cluster --name "$CLUSTER" || true
        rm -rf "$WORK"
    fi
    if ((rc == 0)); then
        say "PASSED in $((SECONDS - started)) s"
    else
        say "FAILED (exit $rc) after $((SECONDS - started)) s"
    fi
    exit "$rc"
}

# --- cluster and images ----------------------------------------------------------------------------
say "building $OPERATOR_IMAGE from $REPO/Dockerfile"
docker build -t "$OPERATOR_IMAGE" "$REPO"

WORK=$(mktemp -d)
export KUBECONFIG=$WORK/kubeconfig
trap cleanup EXIT
trap 'exit 130' INT TERM
node_image=()
if [[ -n ${KIND_NODE_IMAGE:-} ]]; then
    node_image=(--image "$KIND_NODE_IMAGE")
fi
say "creating kind cluster $CLUSTER"
kind create cluster --name "$CLUSTER" --kubeconfig "$KUBECONFIG" --wait 180s ${node_image[@]+"${node_image[@]}"}

say "loading $OPERATOR_IMAGE into the cluster"
kind load docker-image "$OPERATOR_IMAGE" --name "$CLUSTER"
# The Flink and server images are pulled on the host once and loaded, so that repeated runs need
# no pull in the node; when that fails the node pulls them itself.
for image in "$FLINK_IMAGE" "$SERVER_IMAGE"; do
    if { docker image inspect "$image" >/dev/null 2>&1 || docker pull "$image"; } \
        && kind load docker-image "$image" --name "$CLUSTER"; then
        say "loaded $image"
    else
        say "could not preload $image; the node pulls it"
    fi
done

# --- install ---------------------------------------------------------------------------------------
say "kubectl apply -k deploy/"
kubectl apply -k "$REPO/deploy"
kubectl wait --for=condition=Established crd/flinkjobs.flinkop.io --timeout=60s
# The step deploy/operator.yaml asks of everyone: the hosts jars may come from, in place of its placeholder.
say "FLINKOP_JAR_ALLOWED_HOSTS=flink-example-jars.flink.svc (deploy/operator.yaml's placeholder filled in)"
kubectl -n flinkop-system set env deploy/flinkop FLINKOP_JAR_ALLOWED_HOSTS=flink-example-jars.flink.svc
say "kubectl apply -k deploy/flink-session/ (+ example-jars, ReadWriteOnce volume: tests/e2e/kind/)"
kubectl apply -k "$REPO/tests/e2e/kind"

kubectl -n flinkop-system rollout status deploy/flinkop --timeout="${TIMEOUT}s"
for deployment in flink-jobmanager flink-taskmanager flink-example-jars; do
    kubectl -n flink rollout status "deploy/$deployment" --timeout="${TIMEOUT}s"
done

# --- a FlinkJob, then an upgrade through a savepoint -----------------------------------------------
field() { kubectl -n "$NS" get flinkjob "$JOB" -o jsonpath="$1"; }

# Ready at the current generation: status.observedGeneration and the Ready condition's both equal
# metadata.generation (a Ready left from the previous generation does not count). Stalled at the
# current generation fails at once.
wait_ready() {
    local deadline=$((SECONDS + TIMEOUT)) last="" now gen obs ready ready_gen stalled stalled_gen phase
    local query='{.metadata.generation}|{.status.observedGeneration}|{.status.conditions[?(@.type=="Ready")].status}|{.status.conditions[?(@.type=="Ready")].observedGeneration}|{.status.conditions[?(@.type=="Stalled")].status}|{.status.conditions[?(@.type=="Stalled")].observedGeneration}|{.status.phase}'
    while ((SECONDS < deadline)); do
        IFS='|' read -r gen obs ready ready_gen stalled stalled_gen phase < <(field "$query"; echo)
        if [[ $ready == True && $obs == "$gen" && $ready_gen == "$gen" ]]; then
            say "$JOB Ready at generation $gen (phase $phase)"
            return 0
        fi
        if [[ $stalled == True && $stalled_gen == "$gen" ]]; then
            die "$JOB is Stalled at generation $gen: $(field '{.status.conditions[?(@.type=="Stalled")].reason}'): $(field '{.status.message}')"
        fi
        now="phase=${phase:-none} generation=$gen: $(field '{.status.message}')"
        if [[ $now != "$last" ]]; then
            say "$now"
            last=$now
        fi
        sleep 3
    done
    die "$JOB not Ready at its current generation within ${TIMEOUT} s"
}

say "applying $SAMPLE in namespace $NS"
kubectl create namespace "$NS"
kubectl -n "$NS" apply -f "$SAMPLE"
wait_ready
first_job=$(field '{.status.jobId}')
first_generation=$(field '{.metadata.generation}')
[[ -n $first_job ]] || die "no status.jobId once Ready"
say "running as Flink job $first_job"

say "changing args to $UPGRADED_ARGS: an upgrade through a savepoint"
kubectl -n "$NS" patch flinkjob "$JOB" --type=merge -p "{\"spec\":{\"args\":$UPGRADED_ARGS}}"
second_generation=$(field '{.metadata.generation}')
((second_generation > first_generation)) || die "the patch did not raise the generation"
wait_ready

second_job=$(field '{.status.jobId}')
savepoint=$(field '{.status.lastSavepoint.path}')
[[ -n $second_job && $second_job != "$first_job" ]] || die "no new Flink job after the upgrade (jobId $second_job)"
[[ -n $savepoint ]] || die "no status.lastSavepoint after the upgrade"
# What Flink itself says the new job started from, through the apiserver's service proxy.
checkpoints=$(kubectl get --raw "/api/v1/namespaces/flink/services/flink-jobmanager:rest/proxy/jobs/$second_job/checkpoints")
restored=$(sed -n 's/.*"restored":{\([^}]*\)}.*/\1/p' <<<"$checkpoints" | sed -n 's/.*"external_path":"\([^"]*\)".*/\1/p')
[[ $restored == "$savepoint" ]] || die "Flink job $second_job restored from '${restored}', not from the savepoint '${savepoint}'"
say "upgraded: Flink job $first_job -> $second_job, restored from $savepoint"

echo
kubectl -n "$NS" get flinkjob "$JOB" -o wide
echo
kubectl -n "$NS" get flinkjob "$JOB" -o yaml | sed -n '/^status:/,$p'
echo
kubectl -n "$NS" get events --field-selector "involvedObject.name=$JOB" --sort-by=.lastTimestamp
echo

say "deleting $JOB: the finalizer stops the job with a final savepoint"
kubectl -n "$NS" delete flinkjob "$JOB" --timeout="${TIMEOUT}s"
