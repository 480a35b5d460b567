"""`fastproxy run | read | replay | ca`: the command line, with mitmdump's flags.

Every flag of `run` is also an option (`--set name=value` sets any of them); `--help`
lists them all, with the addon options, and the events addons can listen to.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from fastproxy.addonmanager import AddonManager
from fastproxy.hooks import HOOKS
from fastproxy.log import setup_termlog
from fastproxy.options import Options, OptionsError


def default_addons() -> list:
    """The built-in addons every proxy process loads."""
    from fastproxy.addons.dumper import Dumper
    from fastproxy.addons.save import Save
    return [Dumper(), Save()]


def _options_epilog(options: Options) -> str:
    lines = ["options (set any with --set name=value):"]
    for option in sorted(options, key=lambda o: o.name):
        default = "" if option.default in (None, [], "") else f" [default: {option.default}]"
        lines.append(f"  {option.name} ({option.typespec.__name__}): {option.help}{default}")
    lines.append("\nevents addons can listen to (see hooks.py):")
    lines.extend(f"  {hook.name}({', '.join(hook.args)}): {hook.doc}" for hook in HOOKS.values())
    return "\n".join(lines)


def _add_run_parser(commands, options: Options) -> None:
    run = commands.add_parser(
        "run", help="run the proxy", epilog=_options_epilog(options),
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Run the intercepting proxy (flags as mitmdump's).")
    run.add_argument("-p", "--listen-port", type=int,
                     help="port to listen on (default 8080; 1080 in socks5 mode)")
    run.add_argument("--listen-host", help="address to listen on (default 127.0.0.1)")
    run.add_argument("-m", "--mode", action="append", metavar="MODE",
                     help="regular (default), reverse:URL, upstream:URL, socks5, transparent; "
                          "MODE@[HOST:]PORT listens there; repeat for several listeners, "
                          "e.g. --mode regular@8080 --mode socks5@1080")
    run.add_argument("--proxyauth", metavar="USER:PASS|@HTPASSWD",
                     help="require proxy authentication (regular, upstream, socks5)")
    run.add_argument("-s", "--script", dest="scripts", action="append", default=[],
                     metavar="SCRIPT", help="load an addon script (repeatable)")
    run.add_argument("-w", "--save-stream-file", metavar="FILE",
                     help="record flows to FILE (+FILE appends)")
    run.add_argument("-q", "--quiet", action="store_true", help="print nothing per flow")
    run.add_argument("-v", "--verbose", action="count", default=0,
                     help="more detail: -v headers, -vv bodies and debug log")
    run.add_argument("-k", "--ssl-insecure", action="store_true",
                     help="do not verify upstream TLS certificates")
    run.add_argument("--ignore-hosts", action="append", default=[], metavar="REGEX",
                     help="pass matching host:port through untouched")
    run.add_argument("--allow-hosts", action="append", default=[], metavar="REGEX",
                     help="intercept only matching host:port")
    run.add_argument("--tcp-hosts", action="append", default=[], metavar="REGEX",
                     help="treat matching host:port as raw TCP")
    run.add_argument("--certs", action="append", default=[], metavar="[DOMAIN=]PEM",
                     help="serve this certificate (PEM with key) for DOMAIN, e.g. "
                          "'*.example.com=cert.pem' (repeatable)")
    run.add_argument("--workers", type=int, help="worker processes on one port (default 1)")
    run.add_argument("--set", dest="setoptions", action="append", default=[],
                     metavar="NAME=VALUE", help="set any option (repeatable)")


def _apply_run_args(args: argparse.Namespace, options: Options) -> None:
    values = {}
    for flag, name in (("listen_port", "listen_port"), ("listen_host", "listen_host"),
                       ("mode", "mode"), ("workers", "workers")):
        if getattr(args, flag) is not None:
            values[name] = getattr(args, flag)
    if args.proxyauth is not None:
        values["proxyauth"] = args.proxyauth
    if args.scripts:
        values["scripts"] = args.scripts
    if args.ssl_insecure:
        values["ssl_insecure"] = True
    for name in ("ignore_hosts", "allow_hosts", "tcp_hosts", "certs"):
        if getattr(args, name):
            values[name] = getattr(args, name)
    if args.quiet:
        values.update(flow_detail=0, termlog_verbosity="error")
    elif args.verbose:
        values.update(flow_detail=1 + min(args.verbose, 2))
        if args.verbose > 1:
            values["termlog_verbosity"] = "debug"
    if args.save_stream_file:
        values["save_stream_file"] = args.save_stream_file
    options.update(**values)
    options.set(*args.setoptions)


def _serve(options: Options, addons: AddonManager) -> int:
    import uvloop

    from fastproxy.master import Master
    setup_termlog(options.termlog_verbosity)
    try:
        uvloop.run(Master(options, addons).run())
    except OSError as e:
        print(f"fastproxy: cannot listen ({', '.join(options.mode)}): {e}", file=sys.stderr)
        return 1
    return 0


def check_run_options(options: Options) -> None:
    """Refuse, before anything starts, what the proxy could not serve (exit status 2)."""
    from fastproxy.proxy.proxyauth import make_validator
    from fastproxy.proxy.server import parse_modes
    modes = parse_modes(options.mode)  # an unknown or unsupported mode
    make_validator(options.proxyauth)
    if options.upstream_auth is not None and ":" not in options.upstream_auth:
        raise ValueError(f"invalid upstream_auth {options.upstream_auth!r}: expected user:pass")
    if options.workers > 1 and len(modes) > 1:
        raise ValueError("--workers with several --mode listeners is not supported")


def cmd_run(args: argparse.Namespace, options: Options, addons: AddonManager) -> int:
    try:
        for script in args.scripts:  # first, so that --set can reach their options
            addons.load_script(script)
        _apply_run_args(args, options)
        check_run_options(options)
        from fastproxy.addons.save import preflight
        preflight(options)  # an unwritable -w FILE is fatal here, not a log line later
    except (OptionsError, ValueError, FileNotFoundError, SyntaxError, ImportError) as e:
        print(f"fastproxy: {e}", file=sys.stderr)
        return 2
    if options.workers > 1:
        from fastproxy.master import run_workers

        def serve_worker(index: int) -> int:
            options.update(worker_index=index)
            return _serve(options, addons)
        return run_workers(options, serve_worker)
    return _serve(options, addons)


def build_parser(options: Options) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fastproxy", description="An intercepting HTTP/1, HTTP/2, WebSocket and TCP proxy.")
    commands = parser.add_subparsers(dest="command", required=True)
    _add_run_parser(commands, options)
    _add_read_parsers(commands)
    _add_ca_parser(commands)
    return parser


def _add_read_parsers(commands) -> None:
    read = commands.add_parser(
        "read", help="list or export the flows of a recording",
        description="List the flows recorded in FILE (a -w recording, ours or mitmproxy's) one "
                    "per line as the console shows them, or export them as HAR 1.2. With "
                    "--workers N the recording is FILE.w0 ... FILE.w{N-1}; FILE reads them all.")
    read.add_argument("file", metavar="FILE")
    read.add_argument("filter", metavar="FILTER", nargs="?",
                      help="mitmproxy filter expression, e.g. '~d example.com & ~c 404'")
    read.add_argument("--har", metavar="OUT.har", help="write the flows as HAR 1.2 ('-': stdout)")
    replay = commands.add_parser(
        "replay", help="send recorded requests again and compare the status codes",
        description="Replay the HTTP requests recorded in FILE to the servers they went to (or "
                    "to the --mode reverse:URL target) and report status code differences.")
    replay.add_argument("file", metavar="FILE")
    replay.add_argument("filter", metavar="FILTER", nargs="?", help="replay only matching flows")
    replay.add_argument("-m", "--mode", help="reverse:URL sends every request to URL instead")
    replay.add_argument("-k", "--ssl-insecure", action="store_true",
                        help="do not verify upstream TLS certificates")
    replay.add_argument("--timeout", type=float, default=10.0, help="seconds per request")


def cmd_read(args: argparse.Namespace) -> int:
    from fastproxy.readcmd import read_main
    return read_main(args.file, args.filter, har_path=args.har)


def cmd_replay(args: argparse.Namespace) -> int:
    from fastproxy.readcmd import replay_main
    return replay_main(args.file, args.filter, insecure=args.ssl_insecure,
                       timeout=args.timeout, mode=args.mode)


def _add_ca_parser(commands) -> None:
    ca = commands.add_parser(
        "ca", help="show the CA certificate (creating it on first use) and how to trust it",
        description="Print where fastproxy's CA certificate is, its fingerprint, and how to "
                    "make clients trust it. The CA is created in the confdir if missing.")
    ca.add_argument("--set", dest="setoptions", action="append", default=[],
                    metavar="NAME=VALUE", help="set an option, e.g. confdir=DIR")


def cmd_ca(args: argparse.Namespace, options: Options) -> int:
    """`fastproxy ca`: the CA's files, fingerprint and trust instructions."""
    from fastproxy.certs import CertStore
    try:
        options.set(*args.setoptions)
        store = CertStore.from_confdir(options.confdir)
    except (OptionsError, OSError, ValueError) as e:
        print(f"fastproxy: {e}", file=sys.stderr)
        return 2
    files = store.files
    fingerprint = ":".join(f"{b:02X}" for b in store.ca.fingerprint())
    print(f"""fastproxy CA: {store.ca.cn}, valid until {store.ca.notafter:%Y-%m-%d}
SHA-256 fingerprint: {fingerprint}

  private key + certificate (keep secret, mode 0600): {files.key}
  certificate, PEM:        {files.pem}
  certificate, DER (.cer): {files.cer}
  certificate, PKCS#12:    {files.p12}

Trust it:
  curl:     curl --proxy http://127.0.0.1:8080 --cacert {files.pem} https://example.com/
  Python:   SSL_CERT_FILE={files.pem} REQUESTS_CA_BUNDLE={files.pem} python app.py
            (httpx: httpx.Client(proxy=..., verify="{files.pem}"))
  Node:     NODE_EXTRA_CA_CERTS={files.pem} node app.js
  Firefox:  Settings > Privacy & Security > Certificates > View Certificates >
            Authorities > Import... {files.pem} (trust for websites)
  Debian/Ubuntu system store (Chrome, most tools):
            sudo cp {files.pem} /usr/local/share/ca-certificates/fastproxy.crt
            sudo update-ca-certificates
  macOS:    sudo security add-trusted-cert -d -r trustRoot \\
              -k /Library/Keychains/System.keychain {files.pem}
  Windows / Android / iOS: import {files.cer} (or {files.p12}) as a trusted root CA.""")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    options = Options()
    addons = AddonManager(options)
    addons.add(*default_addons())
    parser = build_parser(options)
    args = parser.parse_args(argv)
    if args.command == "run":
        return cmd_run(args, options, addons)
    if args.command == "read":
        return cmd_read(args)
    if args.command == "replay":
        return cmd_replay(args)
    if args.command == "ca":
        return cmd_ca(args, options)
    parser.error(f"unknown command {args.command}")
    return 2


if __name__ == "__main__":
    sys.exit(main())
