#!/usr/bin/env python3
"""Validate an in-toto Statement v1 with a SLSA Provenance v1 predicate,
optionally wrapped in Ed25519-signed DSSE envelope(s).

The checks that matter are other people's: in-toto-attestation parses the statement
and the SLSA Provenance v1 predicate against in-toto's own protobuf definitions
(unknown fields refused) and validates the statement; securesystemslib verifies the
DSSE signature. This script only drives them, and adds the predicate's required
fields (in-toto-attestation has no Provenance validator) and digest formats.
scripts/test.sh installs both packages; tests/e2e/audit.rs runs this script.

Usage:
  validate.py statement.json
  validate.py envelope.jsonl pub.pem [--keyid ID | --keyid-any]

envelope.jsonl: one DSSE envelope JSON object per non-empty line (a file
holding a single, possibly pretty-printed, JSON envelope also works).
Every envelope must carry a valid signature by pub.pem, and its payload must be
a valid Statement.

Keyid matching (securesystemslib only tries a key on signatures whose keyid is
equal to the key's keyid):
  default      the signature keyid must equal securesystemslib's default keyid
               for the key: sha256 hex of canonical JSON
               {"keytype":"ed25519","keyval":{"public":"<raw pubkey hex>"},"scheme":"ed25519"}
  --keyid ID   the signature keyid must equal ID
  --keyid-any  the keyid is only a hint (DSSE spec): the key is tried on every
               signature, whatever its keyid

Exit 0 if valid; 1 if invalid (message on stderr); 2 on usage error.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import sys

from google.protobuf import json_format
from in_toto_attestation.predicates.provenance.v1 import provenance_pb2
from in_toto_attestation.v1 import statement_pb2
from in_toto_attestation.v1.resource_descriptor import ResourceDescriptor
from in_toto_attestation.v1.statement import Statement

STATEMENT_TYPE = "https://in-toto.io/Statement/v1"
SLSA_V1 = "https://slsa.dev/provenance/v1"
PAYLOAD_TYPE = "application/vnd.in-toto+json"

# Digest sizes in bytes. All but blake3 are the in-toto DigestSet spec's named
# algorithms (lowercase hex); blake3 is not named there (custom algorithms are
# allowed), here it is held to lowercase hex of its default 32-byte output.
DIGEST_SIZES = {
    "md5": 16, "sha1": 20, "sha224": 28, "sha512_224": 28, "sha256": 32,
    "sha512_256": 32, "sha384": 48, "sha512": 64, "sha3_224": 28,
    "sha3_256": 32, "sha3_384": 48, "sha3_512": 64, "ripemd160": 20,
    "sm3": 32, "dirHash": 32, "blake3": 32,
}
GIT_ALGS = {"gitCommit", "gitTree", "gitBlob", "gitTag"}  # sha1 or sha256
HEX_ALGS = {"shake128", "shake256", "blake2b", "blake2s", "gost"}  # any length
LOWER_HEX = re.compile(r"[0-9a-f]+")
URI = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*:\S+")  # absolute URI: scheme ':' rest
B64 = re.compile(r"[A-Za-z0-9+/]*={0,2}|[A-Za-z0-9\-_]*={0,2}")
OPAQUE = {"google.protobuf.Struct", "google.protobuf.Value",
          "google.protobuf.ListValue", "google.protobuf.Timestamp"}


class Invalid(Exception):
    pass


def _reject_dupes(pairs):
    d = {}
    for k, v in pairs:
        if k in d:
            raise Invalid(f"duplicate JSON key {k!r}")
        d[k] = v
    return d


def _reject_constant(name):
    raise Invalid(f"non-standard JSON constant {name}")


def load_json(text: str, what: str):
    try:
        return json.loads(text, object_pairs_hook=_reject_dupes,
                          parse_constant=_reject_constant)
    except Invalid as e:
        raise Invalid(f"{what}: {e}") from None
    except ValueError as e:
        raise Invalid(f"{what}: not JSON: {e}") from None


def check_keys(raw, desc, path: str) -> None:
    """Only the spec's camelCase JSON names, no nulls. (protobuf's parser also
    accepts the proto names, e.g. "type" for "_type", and treats null as unset.)"""
    if not isinstance(raw, dict):
        raise Invalid(f"{path}: must be a JSON object")
    fields = {f.json_name: f for f in desc.fields}
    for key, val in raw.items():
        f = fields.get(key)
        if f is None:
            raise Invalid(f"{path}: unknown field {key!r} (allowed: {sorted(fields)})")
        if val is None:
            raise Invalid(f"{path}.{key}: null is not allowed")
        mt = f.message_type
        if mt is None or mt.full_name in OPAQUE or mt.GetOptions().map_entry:
            continue
        repeated = getattr(f, "is_repeated", None)
        if repeated is None:  # protobuf < 5 has only .label
            repeated = f.label == f.LABEL_REPEATED
        if repeated:
            if not isinstance(val, list):
                raise Invalid(f"{path}.{key}: must be a JSON array")
            for i, item in enumerate(val):
                check_keys(item, mt, f"{path}.{key}[{i}]")
        else:
            check_keys(val, mt, f"{path}.{key}")


def check_rd(raw: dict, pb, path: str) -> None:
    try:  # the library's rule: one of name, uri, digest
        ResourceDescriptor.copy_from_pb(pb).validate()
    except ValueError as e:
        raise Invalid(f"{path}: {e}") from None
    # the spec's rule (resource_descriptor.md): one of uri, digest, content
    if not (pb.uri or len(pb.digest) or "content" in raw):
        raise Invalid(f"{path}: a ResourceDescriptor must set one of uri, digest, content")
    if "content" in raw:
        c = raw["content"]  # protobuf silently turns invalid base64 into b""
        if not isinstance(c, str) or not B64.fullmatch(c):
            raise Invalid(f"{path}.content: not base64")
        try:
            base64.b64decode(c.replace("-", "+").replace("_", "/").rstrip("=")
                             + "=" * (-len(c.rstrip("=")) % 4), validate=True)
        except binascii.Error as e:
            raise Invalid(f"{path}.content: not base64: {e}") from None
    for alg, val in pb.digest.items():
        where = f"{path}.digest.{alg}"
        if not val:
            raise Invalid(f"{where}: empty digest")
        if alg in DIGEST_SIZES or alg in GIT_ALGS or alg in HEX_ALGS:
            if not LOWER_HEX.fullmatch(val) or len(val) % 2:
                raise Invalid(f"{where}: must be lowercase hex, got {val!r}")
            n = len(val) // 2
            if alg in DIGEST_SIZES and n != DIGEST_SIZES[alg]:
                raise Invalid(f"{where}: {n} bytes, want {DIGEST_SIZES[alg]}")
            if alg in GIT_ALGS and n not in (20, 32):
                raise Invalid(f"{where}: {n} bytes, want 20 or 32")


def validate_provenance(raw, what: str) -> None:
    pre = f"{what}.predicate"
    check_keys(raw, provenance_pb2.Provenance.DESCRIPTOR, pre)
    try:
        p = json_format.ParseDict(raw, provenance_pb2.Provenance())
    except json_format.ParseError as e:
        raise Invalid(f"{pre}: {e}") from None
    # Required fields: those of the upstream Go validator (SLSA Build L1).
    if not p.HasField("build_definition"):
        raise Invalid(f"{pre}.buildDefinition required")
    bd = p.build_definition
    if not bd.build_type:
        raise Invalid(f"{pre}.buildDefinition.buildType required")
    if not URI.fullmatch(bd.build_type):  # SLSA: TypeURI (not checked upstream)
        raise Invalid(f"{pre}.buildDefinition.buildType must be an absolute URI, got {bd.build_type!r}")
    if not bd.HasField("external_parameters"):
        raise Invalid(f"{pre}.buildDefinition.externalParameters required (may be {{}})")
    if not p.HasField("run_details"):
        raise Invalid(f"{pre}.runDetails required")
    rd = p.run_details
    if not rd.HasField("builder"):
        raise Invalid(f"{pre}.runDetails.builder required")
    if not rd.builder.id:
        raise Invalid(f"{pre}.runDetails.builder.id required")
    if not URI.fullmatch(rd.builder.id):  # SLSA: TypeURI (not checked upstream)
        raise Invalid(f"{pre}.runDetails.builder.id must be an absolute URI, got {rd.builder.id!r}")
    md = rd.metadata
    if (md.HasField("started_on") and md.HasField("finished_on")
            and md.finished_on.ToNanoseconds() < md.started_on.ToNanoseconds()):
        raise Invalid(f"{pre}.runDetails.metadata: finishedOn is before startedOn")
    rbd, rrd = raw.get("buildDefinition", {}), raw.get("runDetails", {})
    groups = [
        (f"{pre}.buildDefinition.resolvedDependencies", rbd.get("resolvedDependencies", []), bd.resolved_dependencies),
        (f"{pre}.runDetails.builder.builderDependencies", rrd.get("builder", {}).get("builderDependencies", []), rd.builder.builder_dependencies),
        (f"{pre}.runDetails.byproducts", rrd.get("byproducts", []), rd.byproducts),
    ]
    for path, raws, pbs in groups:
        for i, (r, pb) in enumerate(zip(raws, pbs)):
            check_rd(r, pb, f"{path}[{i}]")


def validate_statement(text: str, what: str = "statement") -> None:
    raw = load_json(text, what)
    check_keys(raw, statement_pb2.Statement.DESCRIPTOR, what)
    try:
        pb = json_format.Parse(text, statement_pb2.Statement())
        Statement.copy_from_pb(pb).validate()
    except (json_format.ParseError, ValueError) as e:
        raise Invalid(f"{what}: {e}") from None
    if raw.get("_type") != STATEMENT_TYPE:
        raise Invalid(f"{what}: _type must be {STATEMENT_TYPE}")
    if raw.get("predicateType") != SLSA_V1:
        raise Invalid(f"{what}: predicateType must be {SLSA_V1}, got {raw.get('predicateType')!r}")
    for i, (r, s) in enumerate(zip(raw["subject"], pb.subject)):
        check_rd(r, s, f"{what}.subject[{i}]")
    validate_provenance(raw["predicate"], what)


def load_key(pem_path: str, keyid: str | None):
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
    from cryptography.hazmat.primitives.serialization import load_pem_public_key
    from securesystemslib.signer import SSlibKey

    try:
        with open(pem_path, "rb") as f:
            pub = load_pem_public_key(f.read())
    except (OSError, ValueError) as e:
        raise Invalid(f"{pem_path}: cannot load PEM public key: {e}") from None
    if not isinstance(pub, Ed25519PublicKey):
        raise Invalid(f"{pem_path}: not an Ed25519 key ({type(pub).__name__})")
    key = SSlibKey.from_crypto(pub)  # keytype=scheme="ed25519", default keyid
    if keyid is not None:  # also works for "", which from_crypto would replace
        key = SSlibKey(keyid, key.keytype, key.scheme, key.keyval)
    return key


def verify_envelope(env_text: str, key, keyid_any: bool, what: str) -> None:
    from securesystemslib.dsse import Envelope
    from securesystemslib.exceptions import VerificationError
    from securesystemslib.signer import SSlibKey

    raw = load_json(env_text, what)
    if not isinstance(raw, dict):
        raise Invalid(f"{what}: must be a JSON object")
    for k, t in (("payload", str), ("payloadType", str), ("signatures", list)):
        if not isinstance(raw.get(k), t):
            raise Invalid(f"{what}: field {k!r} missing or not a {t.__name__}")
    if raw["payloadType"] != PAYLOAD_TYPE:  # Envelope.verify does not check it
        raise Invalid(f"{what}: payloadType must be {PAYLOAD_TYPE}, got {raw['payloadType']!r}")
    if not raw["signatures"]:
        raise Invalid(f"{what}: no signatures")
    for i, s in enumerate(raw["signatures"]):
        if not isinstance(s, dict) or not isinstance(s.get("keyid"), str) or not isinstance(s.get("sig"), str):
            raise Invalid(f"{what}: signatures[{i}] needs string 'keyid' and 'sig'")
    try:
        env = Envelope.from_dict(raw)  # base64: standard or URL-safe, padded
    except (ValueError, KeyError) as e:  # binascii.Error is a ValueError
        raise Invalid(f"{what}: bad envelope: {e}") from None
    if keyid_any:  # the same key under each signature's keyid
        keys = [SSlibKey(k, key.keytype, key.scheme, key.keyval) for k in env.signatures]
    else:
        keys = [key]
    try:
        env.verify(keys, 1)
    except VerificationError as e:
        ids = sorted(env.signatures)
        hint = "" if keyid_any or key.keyid in env.signatures else (
            f"; no signature has keyid {key.keyid!r} (envelope keyids: {ids};"
            " use --keyid or --keyid-any)")
        raise Invalid(f"{what}: signature verification failed: {e}{hint}") from None
    try:
        body = env.payload.decode("utf-8")
    except UnicodeDecodeError:
        raise Invalid(f"{what}: payload is not UTF-8") from None
    validate_statement(body, f"{what}.payload")


def main(argv: list[str]) -> int:
    args, keyid, keyid_any = [], None, False
    it = iter(argv)
    for a in it:
        if a == "--keyid":
            keyid = next(it, None)
            if keyid is None:
                print("--keyid needs a value", file=sys.stderr)
                return 2
        elif a == "--keyid-any":
            keyid_any = True
        else:
            args.append(a)
    if len(args) not in (1, 2) or (len(args) == 1 and (keyid is not None or keyid_any)):
        print(__doc__, file=sys.stderr)
        return 2
    try:
        try:
            with open(args[0], encoding="utf-8") as f:
                text = f.read()
        except (OSError, UnicodeDecodeError) as e:
            raise Invalid(f"{args[0]}: {e}") from None
        if len(args) == 1:
            validate_statement(text, args[0])
            print(f"OK: {args[0]}: valid in-toto Statement v1 / SLSA Provenance v1")
            return 0
        key = load_key(args[1], keyid)
        lines = [(n, l) for n, l in enumerate(text.splitlines(), 1) if l.strip()]
        try:  # a whole file holding one (maybe pretty-printed) envelope
            json.loads(text)
            lines = [(1, text)]
        except ValueError:
            pass
        if not lines:
            raise Invalid(f"{args[0]}: no envelope")
        for n, line in lines:
            verify_envelope(line, key, keyid_any, f"{args[0]}:{n}")
        kid = "any keyid" if keyid_any else f"keyid {key.keyid}"
        print(f"OK: {args[0]}: {len(lines)} envelope(s) signed by {args[1]}"
              f" ({kid}), payloads valid")
        return 0
    except Invalid as e:
        print(f"INVALID: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
