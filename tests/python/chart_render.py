"""Lints and renders the Helm chart with Helm's own engine (helm-python-sdk,
offline), for every documented mode, validates each rendered manifest
against the Kubernetes schemas (kubernetes-validate --strict), checks that a
broken values file fails, and writes the ConfigMap the default values render
so the test can start the real binary with it.

Usage: chart_render.py CHART_DIR OUT_DIR
"""

import os
import subprocess
import sys

import helm_python as helm
import yaml

BASE = {"keys": {"existingSecret": "sessionbridge-keys"}}

MODES = {
    "sidecar-default": {},
    "example": {"mode": "example"},
    "standalone": {"mode": "standalone", "replicaCount": 2},
    "standalone-sled-pvc": {"mode": "standalone", "store": {"persistence": {"enabled": True}}},
    "redis": {"mode": "standalone", "replicaCount": 3,
              "store": {"kind": "redis", "redis": {"existingSecret": "redis-urls"}}},
    "existing-auth-secret": {"mode": "example", "auth": {"existingSecret": "my-token"}},
    "servicemonitor": {"mode": "standalone", "metrics": {"serviceMonitor": {"enabled": True}}},
    "no-auth-no-metrics": {"mode": "standalone", "auth": {"enabled": False}, "metrics": {"enabled": False}},
}


def merge(a, b):
    out = dict(a)
    for k, v in b.items():
        out[k] = merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def fail(msg):
    print(msg, file=sys.stderr)
    sys.exit(1)


def main() -> int:
    chart_dir, out_dir = sys.argv[1], sys.argv[2]
    os.makedirs(out_dir, exist_ok=True)
    chart = helm.Chart.load(chart_dir)
    for mode, overrides in MODES.items():
        values = merge(BASE, overrides)
        report = helm.lint(chart_dir, values, strict=True)
        problems = [m for m in report.get("messages", []) if m.get("severity", 0) >= 2]
        if problems or report.get("errors"):
            fail(f"{mode}: helm lint --strict: {problems} {report.get('errors')}")
        rendered = chart.render(chart.merge_values(values), name="sb", namespace="shop",
                                is_install=True)
        docs = []
        for path, text in sorted(rendered.items()):
            if path.endswith("NOTES.txt") or not text.strip():
                continue
            for doc in yaml.safe_load_all(text):
                if doc:
                    docs.append(doc)
        kinds = sorted(d["kind"] for d in docs)
        expected = {"ConfigMap"}
        if values.get("mode") in ("example", "standalone"):
            expected |= {"Deployment", "PodDisruptionBudget"}
        if values.get("mode") == "standalone":
            expected.add("Service")
        if not expected <= set(kinds):
            fail(f"{mode}: rendered {kinds}, expected at least {sorted(expected)}")
        manifest = os.path.join(out_dir, f"{mode}.yaml")
        with open(manifest, "w") as f:
            yaml.safe_dump_all([d for d in docs if d["kind"] != "ServiceMonitor"], f)
        check = subprocess.run(["kubernetes-validate", "--strict", "--quiet", manifest],
                               capture_output=True, text=True)
        if check.returncode != 0:
            fail(f"{mode}: kubernetes-validate:\n{check.stdout}{check.stderr}")
        if mode == "sidecar-default":
            cm = next(d for d in docs if d["kind"] == "ConfigMap")
            with open(os.path.join(out_dir, "sessionbridge.toml"), "w") as f:
                f.write(cm["data"]["sessionbridge.toml"])
        if mode == "example":
            dep = next(d for d in docs if d["kind"] == "Deployment")
            c = next(c for c in dep["spec"]["template"]["spec"]["containers"]
                     if c["name"] == "sessionbridge")
            sc = c["securityContext"]
            assert sc["runAsNonRoot"] and sc["readOnlyRootFilesystem"], sc
            assert not sc["allowPrivilegeEscalation"] and sc["capabilities"]["drop"] == ["ALL"], sc
            assert "grpc" in c["readinessProbe"], c["readinessProbe"]
            assert c["livenessProbe"]["grpc"]["service"] == "liveness", c["livenessProbe"]
            # Probes go to the health-only listener; the API stays on loopback.
            health = next(p["containerPort"] for p in c["ports"] if p["name"] == "health")
            for probe in ("readinessProbe", "livenessProbe", "startupProbe"):
                assert c[probe]["grpc"]["port"] == health, c[probe]
            cm = next(d for d in docs if d["kind"] == "ConfigMap")
            toml = cm["data"]["sessionbridge.toml"]
            assert 'listen = "127.0.0.1:' in toml and "insecure_listen" not in toml, toml
            assert f'health_listen = "0.0.0.0:{health}"' in toml, toml
            with open(os.path.join(out_dir, "args.txt"), "w") as f:
                f.write("\n".join(c["args"]))
        print(f"{mode}: {len(docs)} manifests ok ({', '.join(kinds)})")

    # A broken values file must fail.
    for what, bad in {
        "typo": {"config": {"cookieNmae": "x"}},
        "wrong type": {"grpc": {"port": "fifty"}},
        "missing key secret": {"keys": {"existingSecret": ""}, "mode": "standalone"},
    }.items():
        try:
            values = merge(BASE, bad)
            report = helm.lint(chart_dir, values, strict=True)
            if report.get("errors") or any(m.get("severity", 0) >= 3 for m in report.get("messages", [])):
                continue
            chart.render(chart.merge_values(values), name="sb", namespace="shop", is_install=True)
        except Exception:
            continue
        fail(f"broken values were accepted: {what}")
    print("chart ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())
