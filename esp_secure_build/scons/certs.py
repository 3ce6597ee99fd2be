"""Builders for embedded files and CA certificates: ``EmbedTxtFile``, ``EmbedFile``, ``EspCaCert``, ``CrtBundle``.

``env.EmbedTxtFile(source)`` / ``env.EmbedFile(source)`` (or ``(target, source)``)
    Each source file becomes an object with ESP-IDF's ``EMBED_TXTFILES`` /
    ``EMBED_FILES`` symbols: ``_binary_<name>_start``, ``_binary_<name>_end`` and
    ``<name>_length`` (plus ``<name>``), ``<name>`` made from the file name as
    CMake's ``MAKE_C_IDENTIFIER`` makes it, in section ``.rodata.embedded``. Text
    files get a terminating NUL (not counted in the length). The generated
    ``<file>.S`` is assembled by the configured cross compiler (``env.EspToolchain()``),
    next to the source file (use a VariantDir or give the object as ``target``).
    Returns the object nodes; the embedded file is a dependency of its object.
    ``name="x.pem"`` names the symbols after ``x.pem`` instead of the file (one source
    only). The summary JSON of an ``EspCaCert`` result passed as source is skipped,
    so ``env.EmbedTxtFile(env.EspCaCert(...))`` embeds the PEM only.
``env.EspCaCert(target, source)``
    Reads a PEM, DER, PEM bundle or saved ``openssl s_client -showcerts`` output,
    keeps the last certificate (the root) or the whole bundle, checks it (a CA,
    self-signed when it names itself as issuer, a chain in order, not expired, not
    yet valid) and writes it as normalised PEM, so whitespace edits of the source
    change nothing downstream. Expiry within the horizon is a warning naming the
    date. Also writes ``<target>.json``: ``source``, ``chain_length``,
    ``certificates`` (``subject``, ``sha256`` fingerprint, ``not_after``) and
    ``warnings``, for the build summary.
``env.CrtBundle(target, sources)``
    ESP-IDF ``esp_crt_bundle`` (``x509_crt_bundle``) from PEM/DER files and folders
    (their ``*.pem`` and ``*.der``), byte-identical with ``gen_crt_bundle.py``.

Construction variables (defaults in brackets):

``ESP_EMBED_INLINE`` [False]
    Write the bytes into the ``.S`` as ``.byte`` lines (as ESP-IDF does) instead of
    ``.incbin`` of the file's absolute path.
``ESP_CERT_HORIZON`` [10]
    Years of service life: a certificate expiring sooner is a warning (EspCaCert, CrtBundle).
``ESP_CERT_KEEP_BUNDLE`` [False]
    EspCaCert keeps every certificate of the input instead of the last one.
``ESP_CRT_BUNDLE_FILTER`` [unset]
    CSV whose second column names the certificates to keep from an input called
    ``cacrt_all.pem`` (gen_crt_bundle.py's ``--filter``); a dependency, relative to
    the SConscript that calls CrtBundle.
``ESP_CRT_BUNDLE_MAX_CERTS`` [unset: 200, or 65535 in the legacy format]
    Most certificates allowed (``--max-certs``).
``ESP_CRT_BUNDLE_LEGACY`` [False]
    Older bundle format of earlier ESP-IDF releases (16-bit count, no offset table).
``ESP_CRT_BUNDLE_CHECK`` [True]
    Run the CA checks on every bundle certificate; False packs whatever parses.
``ESP_EMBED_COMSTR`` [EMBED $TARGET], ``ESP_CA_CERT_COMSTR`` [CA-CERT $TARGET],
``ESP_CRT_BUNDLE_COMSTR`` [CRT-BUNDLE $TARGET]
    The one line printed per step.

``ESP_EMBED_TEXT`` and ``ESP_EMBED_NAME`` are set per call by the embed methods.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any

import SCons.Builder
import SCons.Errors
import SCons.Node.FS
import SCons.Util

# certs (cryptography's X.509), crt_bundle and embed are imported by the actions
# that use them: every build imports this module, few build certificates.
from ..errors import EspSecureError
from ..fileio import read_bytes, write_atomic, write_text_atomic
from .common import core_action, env_bool, env_int, env_str

DEFAULT_HORIZON_YEARS = 10.0  # certs.DEFAULT_HORIZON_YEARS; a test keeps them equal
MAX_HORIZON_YEARS = 100.0  # certs.MAX_HORIZON_YEARS; the same test

EMBED_VARS = ["ESP_EMBED_TEXT", "ESP_EMBED_NAME", "ESP_EMBED_INLINE"]
CA_CERT_VARS = ["ESP_CERT_HORIZON", "ESP_CERT_KEEP_BUNDLE"]
CRT_BUNDLE_VARS = [
    "ESP_CRT_BUNDLE_FILTER", "ESP_CRT_BUNDLE_MAX_CERTS", "ESP_CRT_BUNDLE_LEGACY", "ESP_CRT_BUNDLE_CHECK",
    "ESP_CERT_HORIZON",
]  # fmt: skip
SUMMARY_SUFFIX = ".json"


def _warn(message: str) -> None:
    print(f"esp-secure: warning: {message}", file=sys.stderr)


def _real(node: Any) -> Any:
    """The node whose file exists: a VariantDir with duplicate=False keeps sources in the source folder."""
    real = node.rfile()
    return real if real.exists() else node.srcnode().rfile()


def _horizon(env: Any) -> float:
    text = env_str(env, "ESP_CERT_HORIZON", str(DEFAULT_HORIZON_YEARS))
    try:
        years = float(text)
    except ValueError:
        raise EspSecureError(f"construction variable ESP_CERT_HORIZON={text!r} is not a number of years") from None
    if not 0 <= years <= MAX_HORIZON_YEARS:  # NaN too; a date cannot hold 1000000 years
        raise EspSecureError(
            f"construction variable ESP_CERT_HORIZON={text!r} is out of range (0 to {MAX_HORIZON_YEARS:g} years)"
        )
    return years


# --------------------------------------------------------------------------- embedding


def _build_embed_asm(target: Any, source: Any, env: Any) -> None:
    from .. import embed

    src = _real(source[0])
    name = env_str(env, "ESP_EMBED_NAME") or None
    asm = embed.embed_asm(
        src.get_abspath(), text=env_bool(env, "ESP_EMBED_TEXT"), name=name, inline=env_bool(env, "ESP_EMBED_INLINE")
    )
    write_text_atomic(target[0].get_abspath(), asm)


def _embed(env: Any, target: Any, source: Any, text: bool, name: str | None, overrides: dict[str, Any]) -> list[Any]:
    if source is None:  # env.EmbedTxtFile('ca.pem'): like any builder, one argument is the source
        target, source = None, target
    nodes = [
        n for n in env.arg2nodes(SCons.Util.flatten(source), env.fs.File)
        if not getattr(n.attributes, "esp_cert_summary", False)
    ]  # fmt: skip
    if "Object" not in env["BUILDERS"]:
        raise SCons.Errors.UserError(
            "EmbedTxtFile/EmbedFile assemble with the cross compiler: call env.EspToolchain() first"
        )
    if target is not None and (len(nodes) != 1 or (SCons.Util.is_List(target) and len(target) != 1)):
        raise SCons.Errors.UserError(f"embedding {len(nodes)} files: give no target, or one file per call")
    if name is not None and len(nodes) != 1:
        raise SCons.Errors.UserError("name= names the symbols of one file: embed one file per call")
    suffix = env.subst("$OBJSUFFIX")
    objects: list[Any] = []
    for src in nodes:
        if target is not None:
            obj = env.arg2nodes(target, env.fs.File)[0]
            folder, stem = obj.dir, obj.name[: -len(suffix)] if suffix and obj.name.endswith(suffix) else obj.name
        else:
            folder, stem = src.dir, src.name  # ESP-IDF's <name>.S, next to the file
        asm = env._EspEmbedAsm(folder.File(stem + ".S"), src, ESP_EMBED_TEXT=text, ESP_EMBED_NAME=name or "")
        out = env.Object(folder.File(stem + suffix), asm, **overrides)
        # .incbin is invisible to SCons: the embedded file itself must reassemble the object.
        env.Depends(out, src)
        objects += out
    return objects


def embed_txt_file(env: Any, target: Any = None, source: Any = None, name: str | None = None, **kw: Any) -> list[Any]:
    """Objects for text files (NUL-terminated), with ESP-IDF's EMBED_TXTFILES symbols."""
    return _embed(env, target, source, True, name, kw)


def embed_file(env: Any, target: Any = None, source: Any = None, name: str | None = None, **kw: Any) -> list[Any]:
    """Objects for binary files, with ESP-IDF's EMBED_FILES symbols."""
    return _embed(env, target, source, False, name, kw)


# --------------------------------------------------------------------------- CA certificate


def _build_ca_cert(target: Any, source: Any, env: Any) -> None:
    from .. import certs as certmod

    src = _real(source[0])
    label = src.get_path()
    found = certmod.parse_certificates(read_bytes(src.get_abspath(), "certificate file"), label)
    result = certmod.check_certificates(
        found, source=label, keep_bundle=env_bool(env, "ESP_CERT_KEEP_BUNDLE"), horizon_years=_horizon(env)
    )
    summary = {
        "source": label,
        "chain_length": len(result.chain),
        "certificates": [s.as_dict() for s in result.summaries],
        "warnings": list(result.warnings),
    }
    pem = result.pem
    write_atomic(target[0].get_abspath(), pem)
    write_text_atomic(target[1].get_abspath(), json.dumps(summary, indent=2, ensure_ascii=False) + "\n")
    for text in result.warnings:
        _warn(text)


def _ca_cert_emitter(target: Any, source: Any, env: Any) -> tuple[list[Any], list[Any]]:
    pem = target[0]
    if source and pem.get_abspath() == source[0].get_abspath():
        raise SCons.Errors.UserError(
            f"EspCaCert: the output {pem.get_path()} would overwrite its input; name another target"
        )
    summary = pem.dir.File(pem.name + SUMMARY_SUFFIX)
    summary.attributes.esp_cert_summary = True
    return [pem, summary], source


def read_cert_summary(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The summary EspCaCert wrote next to its PEM (``<pem>.json``), for a build summary."""
    try:
        return json.loads(read_bytes(path, "certificate summary"))
    except ValueError:
        raise EspSecureError("not a certificate summary (bad JSON)", path) from None


# --------------------------------------------------------------------------- certificate bundle


def _build_crt_bundle(target: Any, source: Any, env: Any) -> None:
    from .. import crt_bundle

    max_certs = env_int(env, "ESP_CRT_BUNDLE_MAX_CERTS")
    if max_certs is not None and max_certs < 1:
        raise EspSecureError(f"ESP_CRT_BUNDLE_MAX_CERTS must be at least 1, not {max_certs}")
    filter_node = getattr(target[0].attributes, "esp_crt_filter", None)
    result = crt_bundle.make_bundle(
        [_real(s).get_path() for s in source],
        filter_csv=_real(filter_node).get_path() if filter_node is not None else None,
        max_certs=max_certs,
        legacy=env_bool(env, "ESP_CRT_BUNDLE_LEGACY"),
        check=env_bool(env, "ESP_CRT_BUNDLE_CHECK", True),
        horizon_years=_horizon(env),
    )
    write_atomic(target[0].get_abspath(), result.data)
    for text in result.warnings:
        _warn(text)


def _crt_bundle_emitter(target: Any, source: Any, env: Any) -> tuple[list[Any], list[Any]]:
    # A folder stands for its *.pem and *.der files (on disk or to be built): list
    # them as sources so adding, removing or editing one rebuilds the bundle.
    files: list[Any] = []
    for node in source:
        node = node.disambiguate()
        if isinstance(node, SCons.Node.FS.Dir):
            found = sorted(node.glob("*.pem") + node.glob("*.der"), key=lambda n: n.name)
            found = [n for n in found if isinstance(n, SCons.Node.FS.File)]
            files += found or [node]  # an empty folder: the core names the problem at build time
        else:
            files.append(node)
    filter_csv = env_str(env, "ESP_CRT_BUNDLE_FILTER")
    if filter_csv:
        # Resolved here, relative to the calling SConscript like the sources, and a dependency.
        filter_node = env.File(filter_csv)
        target[0].attributes.esp_crt_filter = filter_node
        env.Depends(target, filter_node)
    return target, files


def generate(env: Any) -> None:
    env.SetDefault(
        ESP_EMBED_INLINE=False,
        ESP_EMBED_TEXT=False,
        ESP_EMBED_NAME="",
        ESP_CERT_HORIZON=DEFAULT_HORIZON_YEARS,
        ESP_CERT_KEEP_BUNDLE=False,
        ESP_CRT_BUNDLE_LEGACY=False,
        ESP_CRT_BUNDLE_CHECK=True,
        ESP_EMBED_COMSTR="EMBED $TARGET",
        ESP_CA_CERT_COMSTR="CA-CERT $TARGET",
        ESP_CRT_BUNDLE_COMSTR="CRT-BUNDLE $TARGET",
    )
    env["BUILDERS"]["_EspEmbedAsm"] = SCons.Builder.Builder(
        action=core_action(_build_embed_asm, "ESP_EMBED_COMSTR", EMBED_VARS), single_source=True
    )
    env["BUILDERS"]["EspCaCert"] = SCons.Builder.Builder(
        action=core_action(_build_ca_cert, "ESP_CA_CERT_COMSTR", CA_CERT_VARS),
        emitter=_ca_cert_emitter,
        single_source=True,
    )
    env["BUILDERS"]["CrtBundle"] = SCons.Builder.Builder(
        action=core_action(_build_crt_bundle, "ESP_CRT_BUNDLE_COMSTR", CRT_BUNDLE_VARS),
        emitter=_crt_bundle_emitter,
        source_factory=SCons.Node.FS.Entry,
    )
    env.AddMethod(embed_txt_file, "EmbedTxtFile")
    env.AddMethod(embed_file, "EmbedFile")
