"""TLS-intercepted requests/s and h2load through the proxy, each against the direct path.

An nginx HTTPS origin (1 worker, ALPN h2 and http/1.1, a 64-byte body) with a test CA made
with cryptography in bench/.work/tls; fastproxy in `reverse:https://` mode in front of it,
trusting that CA (`ssl_verify_upstream_trusted_ca`), so every request is decrypted from
the client and encrypted again to the origin. Rows, each direct and through fastproxy in
the same run, the runs of a mode alternating between the two:

- `keep-alive`: wrk over HTTPS, 50 connections kept alive (HTTP/1.1 on both sides);
- `new conn/req`: wrk with `Connection: close`, so each request is a TCP connection and a
  full TLS handshake (two through the proxy);
- `h2load`: HTTP/2 on both sides, `-c 10 -m 20`, a bounded `-n` sized from a short
  calibration run to last about the wrk duration.

Bounded: wrk runs at most 5 s and 2 repeats per cell whatever --duration/--repeats say
(about a minute in all by default; `--quick` about 20 s).

Standalone: `.venv/bin/python -m bench.scenarios_tls` prints the rows.
"""
from __future__ import annotations

import datetime
import ipaddress
import re
import subprocess
import sys
from pathlib import Path

from bench.load import lua_script, wrk
from bench.origin import BODIES, static_origin
from bench.proc import WORK, Server, free_port, log
from bench.scenarios import Column, Context, median, scenario
from bench.targets import fastproxy

BODY = "64B"
WRK_CONNS = 50
CLOSE_CONNS = 20
H2_CLIENTS, H2_STREAMS = 10, 20
MAX_DURATION, MAX_REPEATS = 5.0, 2
TARGETS = ("direct", "fastproxy")


# -- the origin's CA and certificate -----------------------------------------------------

def make_ca(directory: Path) -> tuple[Path, Path, Path]:
    """A CA and a leaf for 127.0.0.1 (P-256, made once): (ca.pem, leaf.pem, leaf.key)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID
    ca_pem, leaf_pem, key_pem = (directory / n for n in ("ca.pem", "leaf.pem", "leaf.key"))
    if ca_pem.exists() and leaf_pem.exists() and key_pem.exists():
        return ca_pem, leaf_pem, key_pem
    directory.mkdir(parents=True, exist_ok=True)
    now = datetime.datetime.now(datetime.timezone.utc)
    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "fastproxy bench origin CA")])

    def builder(subject, public_key):
        return (x509.CertificateBuilder().subject_name(subject).issuer_name(ca_name)
                .public_key(public_key).serial_number(x509.random_serial_number())
                .not_valid_before(now - datetime.timedelta(days=1))
                .not_valid_after(now + datetime.timedelta(days=365)))
    ca = (builder(ca_name, ca_key.public_key())
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
          .add_extension(x509.KeyUsage(True, False, False, False, False, True, True, False,
                                       False), True)
          .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), False)
          .sign(ca_key, hashes.SHA256()))
    leaf = (builder(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]),
                    key.public_key())
            .add_extension(x509.SubjectAlternativeName([
                x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]),
                False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
                ca_key.public_key()), False)
            .sign(ca_key, hashes.SHA256()))
    pem = serialization.Encoding.PEM
    ca_pem.write_bytes(ca.public_bytes(pem))
    leaf_pem.write_bytes(leaf.public_bytes(pem) + ca.public_bytes(pem))
    key_pem.write_bytes(key.private_bytes(pem, serialization.PrivateFormat.PKCS8,
                                          serialization.NoEncryption()))
    key_pem.chmod(0o600)
    return ca_pem, leaf_pem, key_pem


def https_origin() -> tuple[Server, Path]:
    """The nginx HTTPS origin (h2 and http/1.1; not yet started) and its CA's PEM."""
    ca_pem, leaf_pem, key_pem = make_ca(WORK / "tls")
    # nginx 1.22 (Debian 12): http2 is a listen parameter (a directive from 1.25.1).
    directives = (f"    ssl_certificate {leaf_pem};\n"
                  f"    ssl_certificate_key {key_pem};\n"
                  "    ssl_protocols TLSv1.2 TLSv1.3;\n")
    return static_origin("tls-origin", "ssl http2", directives), ca_pem


# -- loads --------------------------------------------------------------------------------

def close_script() -> Path:
    """wrk's script with `Connection: close` (wrk then reconnects for every request)."""
    base = lua_script()
    path = base.with_name("wrk-close.lua")
    path.write_text('wrk.headers["Connection"] = "close"\n' + base.read_text())
    return path


def h2load(url: str, requests: int, timeout: float = 120.0) -> dict:
    """One bounded h2load run: req/s, and the failures it counted."""
    argv = ["h2load", "-n", str(requests), "-c", str(H2_CLIENTS), "-m", str(H2_STREAMS), url]
    out = subprocess.run(argv, check=False, capture_output=True, text=True, timeout=timeout)
    rate = re.search(r"finished in ([\d.]+)(m?s), ([\d.]+) req/s", out.stdout)
    done = re.search(r"(\d+) succeeded, (\d+) failed, (\d+) errored", out.stdout)
    if out.returncode != 0 or not rate or not done:
        raise RuntimeError(f"h2load failed ({out.returncode}): "
                           f"{(out.stdout + out.stderr).strip()[-600:]}")
    ok, failed, errored = (int(x) for x in done.groups())
    return {"rps": float(rate.group(3)), "requests": ok, "errors": failed + errored +
            (requests - ok - failed - errored)}


def wrk_run(url: str, conns: int, duration: float, script: Path) -> dict:
    r = wrk(url, conns, duration, script)
    return {"rps": r.rps, "p99_ms": r.p99_ms, "requests": r.requests, "errors": r.error_count}


# -- the scenario -------------------------------------------------------------------------

def tls_rows(duration: float, repeats: int, warmup: float,
             wanted=lambda target: True) -> list[dict]:
    duration, repeats = min(duration, MAX_DURATION), max(1, min(repeats, MAX_REPEATS))
    targets = [t for t in TARGETS if wanted(t)]
    if not targets:
        return []
    path = BODIES[BODY][0]
    origin, ca_pem = https_origin()
    rows: list[dict] = []
    with origin:
        proxy = None
        if "fastproxy" in targets:
            proxy = fastproxy(free_port(), f"reverse:https://127.0.0.1:{origin.port}", "--set",
                              f"ssl_verify_upstream_trusted_ca={ca_pem}", name="fastproxy-tls")
            proxy.start()
        try:
            ports = {"direct": origin.port, "fastproxy": proxy.port if proxy else None}
            urls = {t: f"https://127.0.0.1:{ports[t]}{path}" for t in targets}
            loads = [
                ("keep-alive", WRK_CONNS,
                 lambda url, d: wrk_run(url, WRK_CONNS, d, lua_script())),
                ("new conn/req", CLOSE_CONNS,
                 lambda url, d: wrk_run(url, CLOSE_CONNS, d, close_script())),
            ]
            for mode, conns, fn in loads:
                rows += _cell(mode, conns, targets, urls, fn, duration, repeats, warmup)
            rows += _h2_cell(targets, urls, duration, repeats)
        finally:
            if proxy is not None:
                proxy.stop()
    return rows


def _cell(mode: str, conns: int, targets: list[str], urls: dict, fn, duration: float,
          repeats: int, warmup: float) -> list[dict]:
    runs: dict[str, list[dict]] = {t: [] for t in targets}
    errors: dict[str, str] = {}
    for t in targets:
        if warmup > 0:
            try:
                fn(urls[t], warmup)
            except Exception as e:  # noqa: BLE001 - a failing target is a row
                errors[t] = str(e)
    for _ in range(repeats):
        for t in targets:
            if t not in errors:
                try:
                    runs[t].append(fn(urls[t], duration))
                except Exception as e:  # noqa: BLE001
                    errors[t] = str(e)
    return _summarise(mode, conns, targets, runs, errors)


def _h2_cell(targets: list[str], urls: dict, duration: float, repeats: int) -> list[dict]:
    """h2load with -n sized per target from a short calibration run (also the warm-up)."""
    runs: dict[str, list[dict]] = {t: [] for t in targets}
    errors: dict[str, str] = {}
    sizes: dict[str, int] = {}
    for t in targets:
        try:
            probe = h2load(urls[t], 2000)
            sizes[t] = int(min(max(probe["rps"] * duration, 2000), 500_000))
        except Exception as e:  # noqa: BLE001
            errors[t] = str(e)
    for _ in range(repeats):
        for t in targets:
            if t not in errors:
                try:
                    runs[t].append(h2load(urls[t], sizes[t], timeout=duration * 10 + 60))
                except Exception as e:  # noqa: BLE001
                    errors[t] = str(e)
    return _summarise("h2load", f"{H2_CLIENTS}×{H2_STREAMS}", targets, runs, errors)


def _summarise(mode: str, conns, targets: list[str], runs: dict, errors: dict) -> list[dict]:
    rows = []
    for t in targets:
        row = {"scenario": "tls", "mode": mode, "conns": conns, "target": t}
        if t in errors or not runs[t]:
            row["error"] = errors.get(t, "no run")
            log(f"tls/{t} {mode}: FAILED: {row['error'][:300]}")
        else:
            row["rps"] = median([r["rps"] for r in runs[t]])
            row["p99_ms"] = median([r.get("p99_ms") for r in runs[t]])
            row["errors"] = sum(r["errors"] for r in runs[t])
            row["runs"] = runs[t]
            log(f"tls/{t} {mode}: {row['rps']:,.0f} req/s")
        rows.append(row)
    direct = next((r.get("rps") for r in rows if r["target"] == "direct"), None)
    for row in rows:
        if row["target"] != "direct" and row.get("rps") and direct:
            row["x_direct"] = row["rps"] / direct
    return rows


@scenario("tls", f"TLS: HTTPS {BODY} GET, reverse:https fastproxy vs the nginx HTTPS origin "
          "directly (wrk keep-alive, wrk Connection: close, h2load)", order=27,
          columns=[Column("mode", "mode", "{}"), Column("conns", "conns", "{}"),
                   Column("target", "target", "{}"), Column("req/s", "rps"),
                   Column("p99 ms", "p99_ms", "{:.2f}"),
                   Column("× direct", "x_direct", "{:.2f}×"),
                   Column("errors", "errors", "{:,}")])
def tls_scenario(ctx: Context) -> list[dict]:
    return tls_rows(ctx.duration, ctx.repeats, min(ctx.warmup, 1.0),
                    lambda target: ctx.wanted("tls", target))


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from bench.proc import install_cleanup, raise_nofile
    install_cleanup()
    raise_nofile()
    for r in tls_rows(5.0, 1, 1.0):
        r.pop("runs", None)
        print("  ".join(f"{k}={v:,.2f}" if isinstance(v, float) else f"{k}={v}"
                        for k, v in r.items()))
