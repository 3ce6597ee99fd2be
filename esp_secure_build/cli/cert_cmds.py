"""``fetch-ca``, ``check-cert`` and ``crt-bundle``: CA certificates for firmware."""

from __future__ import annotations

import argparse
import math
import sys

from .. import certs
from ..errors import EspSecureError
from .common import add_option


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 0 <= value < math.inf:  # NaN and infinity too
        raise argparse.ArgumentTypeError(f"{text!r} is negative or not finite")
    return value


def _horizon(text: str) -> float:
    value = _positive_float(text)
    if not value <= certs.MAX_HORIZON_YEARS:
        raise argparse.ArgumentTypeError(f"{text!r} is more than {certs.MAX_HORIZON_YEARS:g} years")
    return value


def _add_check_options(parser: argparse.ArgumentParser) -> None:
    add_option(
        parser, "--horizon-years", type=_horizon, default=certs.DEFAULT_HORIZON_YEARS, metavar="YEARS",
        help="warn when a certificate expires within this many years, the device's service life (default: 10)",
    )  # fmt: skip


def configure(name: str, parser: argparse.ArgumentParser) -> None:
    if name == "fetch-ca":
        parser.add_argument("address", metavar="HOST[:PORT]", help="TLS server (port 443 when not given)")
        parser.add_argument("-o", "--output", required=True, metavar="FILE", help="where to write the CA PEM")
        add_option(
            parser,
            "--keep-bundle",
            action="store_true",
            help="keep the whole presented chain, not just the last certificate",
        )
        parser.add_argument(
            "--timeout", type=_positive_float, default=certs.DEFAULT_TIMEOUT, help="seconds (default: 10)"
        )
        parser.add_argument("--servername", metavar="NAME", help="TLS SNI name to send (default: the host name)")
        trust = parser.add_mutually_exclusive_group()
        trust.add_argument(
            "--expect-fingerprint", metavar="SHA256",
            help="write only if the chain ends in the CA with this SHA-256 fingerprint (checked out of band)",
        )  # fmt: skip
        trust.add_argument(
            "--trust-on-first-use", action="store_true",
            help="write a CA the system trust store does not know (a private CA) without a fingerprint to check",
        )  # fmt: skip
        _add_check_options(parser)
    elif name == "check-cert":
        parser.add_argument(
            "input", metavar="FILE", help="PEM, DER, PEM bundle or saved 'openssl s_client -showcerts' output"
        )
        parser.add_argument("-o", "--output", metavar="FILE", help="write the chosen certificate(s) as normalised PEM")
        add_option(
            parser, "--keep-bundle", action="store_true", help="keep every certificate, not just the last (the root)"
        )
        _add_check_options(parser)
    elif name == "crt-bundle":
        parser.add_argument(
            "-i", "--input", nargs="+", required=True, metavar="PATH",
            help="certificate files (PEM or DER) or folders (their *.pem and *.der files)",
        )  # fmt: skip
        parser.add_argument(
            "-f", "--filter", metavar="CSV",
            help="CSV whose second column names the certificates to keep from an input named cacrt_all.pem",
        )  # fmt: skip
        add_option(
            parser, "-m", "--max-certs", type=int, default=None, metavar="N",
            help="most certificates allowed (default: 200, or 65535 with --legacy)",
        )  # fmt: skip
        parser.add_argument(
            "-o", "--output", default="x509_crt_bundle", metavar="FILE", help="bundle file (default: x509_crt_bundle)"
        )
        parser.add_argument(
            "--legacy", action="store_true",
            help="older bundle format (16-bit count, no offset table) of earlier ESP-IDF releases",
        )  # fmt: skip
        add_option(
            parser,
            "--no-check",
            action="store_true",
            help="skip the CA checks; only require that each certificate parses",
        )
        parser.add_argument("-q", "--quiet", action="store_true", help="print nothing but warnings and errors")
        _add_check_options(parser)
    else:  # pragma: no cover - main.py only routes our names here
        raise ValueError(name)


def run(name: str, args: argparse.Namespace) -> int:
    if name == "fetch-ca":
        result = certs.fetch_ca(
            args.address, args.output, keep_bundle=args.keep_bundle, horizon_years=args.horizon_years,
            timeout=args.timeout, server_name=args.servername,
            expect_fingerprint=args.expect_fingerprint, trust_on_first_use=args.trust_on_first_use,
        )  # fmt: skip
        for note in result.notes:
            print(f"trust:     {note}")
        _report(name, result, args.output)
    elif name == "check-cert":
        if args.output:
            result = certs.write_checked_pem(
                args.input, args.output, keep_bundle=args.keep_bundle, horizon_years=args.horizon_years
            )
        else:
            result = certs.check_file(args.input, keep_bundle=args.keep_bundle, horizon_years=args.horizon_years)
        _report(name, result, args.output)
    elif name == "crt-bundle":
        from .. import crt_bundle

        if args.max_certs is not None and args.max_certs < 1:
            raise EspSecureError(f"--max-certs must be at least 1, not {args.max_certs}")
        bundle = crt_bundle.write_bundle(
            args.output, args.input, filter_csv=args.filter, max_certs=args.max_certs, legacy=args.legacy,
            check=not args.no_check, horizon_years=args.horizon_years,
        )  # fmt: skip
        _warn(name, bundle.warnings)
        if not args.quiet:
            kind = "legacy" if bundle.legacy else "current"
            print(f"{args.output}: {len(bundle.entries)} certificates, {len(bundle.data)} bytes ({kind} format)")
    return 0


def _report(name: str, result: certs.CertCheck, output: str | None) -> None:
    _warn(name, result.warnings)
    for summary in result.summaries:
        print(f"subject:   {summary.subject}")
        print(f"sha256:    {summary.fingerprint}")
        print(f"not after: {summary.as_dict()['not_after']}")
    if output:
        print(f"wrote {output} ({len(result.certificates)} of {len(result.chain)} certificates)")


def _warn(name: str, warnings: tuple[str, ...]) -> None:
    for text in warnings:
        print(f"esp-secure {name}: warning: {text}", file=sys.stderr)
