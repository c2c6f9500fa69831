"""Checks what `helm template` rendered beyond the Kubernetes schemas: that
the pieces fit together the way weir needs them to.

usage: python check_chart.py RENDERED.yaml VALUES_KIND(default|full) WEIR_BINARY DASHBOARD.json
Prints what it checked; exits non-zero with a message on the first mismatch.
"""
import json
import os
import subprocess
import sys
import tempfile
import tomllib

import yaml

rendered, kind, weir, dashboard = sys.argv[1:5]
docs = [d for d in yaml.safe_load_all(open(rendered)) if d]
by_kind = {}
for d in docs:
    by_kind.setdefault(d["kind"], []).append(d)


def one(k, name_suffix=""):
    found = [d for d in by_kind.get(k, []) if d["metadata"]["name"].endswith(name_suffix)]
    assert len(found) == 1, f"want one {k} *{name_suffix}, got {[d['metadata']['name'] for d in found]}"
    return found[0]


def subset(small, big, what):
    for k, v in small.items():
        assert big.get(k) == v, f"{what}: {k}={v!r} not in {big}"


sts = one("StatefulSet")
pod = sts["spec"]["template"]
pod_labels = pod["metadata"]["labels"]
subset(sts["spec"]["selector"]["matchLabels"], pod_labels, "StatefulSet selector")
c = pod["spec"]["containers"][0]

# node_id is the pod name, so file names stay one per node per hour.
env = {e["name"]: e for e in c["env"]}
assert env["POD_NAME"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name", env
config_map = [d for d in by_kind["ConfigMap"] if "weir.toml" in d.get("data", {})][0]
toml = config_map["data"]["weir.toml"]
assert 'node_id = "${POD_NAME}"' in toml, toml
assert 'data_dir = "/var/lib/weir"' in toml, toml
mounts = {m["name"]: m["mountPath"] for m in c["volumeMounts"]}
assert mounts["data"] == "/var/lib/weir" and mounts["config"] == "/etc/weir", mounts
assert c["args"][:3] == ["serve", "--config", "/etc/weir/weir.toml"], c["args"]
assert ("--drain-on-exit" in c["args"]) == (kind == "full"), c["args"]

# The rendered config is one weir accepts.
with tempfile.TemporaryDirectory() as tmp:
    path = os.path.join(tmp, "weir.toml")
    open(path, "w").write(toml)
    check_env = dict(os.environ, POD_NAME="weir-0", WEIR_SHARED_KEY="k", TD_API_KEY="1/x")
    r = subprocess.run([weir, "check", "-c", path], env=check_env, capture_output=True, text=True)
    assert r.returncode == 0, f"weir check refused the rendered config:\n{r.stderr}\n{toml}"

# Shutdown: weir's delivery deadline ends before Kubernetes' SIGKILL.
grace = pod["spec"]["terminationGracePeriodSeconds"]
timeout = tomllib.loads(toml)["outbox"]["shutdown_timeout"]
assert timeout.endswith("s") and int(timeout[:-1]) + 10 <= grace, (timeout, grace)

# Probes on weir's endpoints; non-root, read-only root filesystem.
assert c["livenessProbe"]["httpGet"]["path"] == "/healthz"
assert c["readinessProbe"]["httpGet"]["path"] == "/readyz"
ports = {(p["name"], p["protocol"]): p["containerPort"] for p in c["ports"]}
assert ("forward", "TCP") in ports and ("heartbeat", "UDP") in ports and ("metrics", "TCP") in ports, ports
assert pod["spec"]["securityContext"]["runAsNonRoot"] is True
assert c["securityContext"]["readOnlyRootFilesystem"] is True
assert c["securityContext"]["allowPrivilegeEscalation"] is False
assert mounts.get("tmp") == "/tmp"

# One PVC per pod for the WAL and outbox, kept when the set shrinks.
claims = sts["spec"]["volumeClaimTemplates"]
assert [t["metadata"]["name"] for t in claims] == ["data"], claims
assert sts["spec"]["persistentVolumeClaimRetentionPolicy"]["whenScaled"] == "Retain"

# Services: the client-facing one (TCP + UDP heartbeat) and the headless one
# the StatefulSet names.
headless = one("Service", "-headless")
assert headless["spec"]["clusterIP"] == "None"
assert sts["spec"]["serviceName"] == headless["metadata"]["name"]
main = [s for s in by_kind["Service"] if s is not headless][0]
subset(main["spec"]["selector"], pod_labels, "Service selector")
subset(headless["spec"]["selector"], pod_labels, "headless selector")
protos = {(p["name"], p["protocol"]) for p in main["spec"]["ports"]}
assert protos == {("forward", "TCP"), ("heartbeat", "UDP")}, protos
for svc in (main, headless):
    for p in svc["spec"]["ports"]:
        assert any(cp["name"] == p["targetPort"] for cp in c["ports"]), p

pdb = one("PodDisruptionBudget")
subset(pdb["spec"]["selector"]["matchLabels"], pod_labels, "PDB selector")
ann = pod["metadata"]["annotations"]
assert ann["prometheus.io/scrape"] == "true" and ann["prometheus.io/port"] == str(ports[("metrics", "TCP")])
assert "checksum/config" in ann

if kind == "full":
    sm = one("ServiceMonitor")
    subset(sm["spec"]["selector"]["matchLabels"], headless["metadata"]["labels"], "ServiceMonitor selector")
    assert sm["spec"]["endpoints"][0]["port"] in {p["name"] for p in headless["spec"]["ports"]}
    hpa = one("HorizontalPodAutoscaler")
    assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "StatefulSet", "name": sts["metadata"]["name"]}
    assert "replicas" not in sts["spec"], "HPA owns replicas"
    dash = [d for d in by_kind["ConfigMap"] if "weir.json" in d.get("data", {})][0]
    assert json.loads(dash["data"]["weir.json"]) == json.load(open(dashboard)), "dashboard differs from dashboards/weir.json"
    assert dash["metadata"]["labels"]["grafana_dashboard"] == "1"
    secrets = {s["metadata"]["name"]: s for s in by_kind["Secret"]}
    env_secret = c["envFrom"][0]["secretRef"]["name"]
    assert set(secrets[env_secret]["stringData"]) == {"WEIR_SHARED_KEY", "TD_API_KEY"}
    gcs = [v for v in pod["spec"]["volumes"] if v["name"] == "gcs"][0]["secret"]["secretName"]
    assert "key.json" in secrets[gcs]["stringData"]
    assert env["GOOGLE_APPLICATION_CREDENTIALS"]["value"].startswith(mounts["gcs"])
    sa = one("ServiceAccount")
    assert "eks.amazonaws.com/role-arn" in sa["metadata"]["annotations"]
    assert pod["spec"]["serviceAccountName"] == sa["metadata"]["name"]
    assert main["spec"]["type"] == "LoadBalancer"
    for sink in ("warehouse", "sandbox", "td"):
        assert f'[sinks."{sink}"]' in toml, toml
else:
    assert sts["spec"]["replicas"] == 3
    assert "ServiceMonitor" not in by_kind and "HorizontalPodAutoscaler" not in by_kind
    assert "[sinks.local]" in toml

print(f"{kind}: {len(docs)} objects fit together; weir check accepts the config")
