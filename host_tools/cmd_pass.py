"""``lanectl pass``: make issuer keys, issue, verify and inspect GP1 release passes.

    lanectl pass keygen --out DIR [--alg ed25519|es256]
    lanectl pass issue --key KEY.pem --release-no X --enterprise E --plate P ... --gross-kg N
                       --site S [--gate G]... [--container C]... [--seal ID]...
                       [--direction exit|entry] [--valid-from ISO8601]
                       [--valid-for 2h] [--allow-expired] [--png FILE]
    lanectl pass verify (TEXT | --image IMG) --trust FILE --site S [--gate G]
                        [--direction exit|entry] [--at ISO8601] [--ledger DB] [--json]
    lanectl pass inspect TEXT [--at ISO8601] [--json]

Exit codes: 0 done / pass valid, 1 pass rejected or unreadable, 2 bad arguments or files.
Every error is one ``lanectl pass ...: message`` line on stderr, never a traceback.
"""

from __future__ import annotations

import argparse
import json
import re
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from edge_agent.errors import EdgeAgentError
from edge_agent.protocols import gp1
from host_tools.cli import add_json, command, emit, text
from host_tools.errors import fail

_DURATION = re.compile(r"(\d+)\s*([smhd])")
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(text: str) -> int:
    """Seconds from ``90``, ``30m``, ``2h``, ``1d`` or combinations like ``1h30m``."""
    text = text.strip().lower()
    if text.isdigit():
        return int(text)
    parts = _DURATION.findall(text)
    if not parts or _DURATION.sub("", text).strip():
        raise argparse.ArgumentTypeError(f"bad duration {text!r} (use e.g. 90s, 30m, 2h, 1d)")
    return sum(int(n) * _UNIT_S[u] for n, u in parts)


def parse_instant(text: str) -> datetime:
    """An ISO 8601 instant; without an offset it is taken as UTC."""
    try:
        value = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"bad ISO 8601 time {text!r}") from None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _keygen(args: argparse.Namespace) -> int:
    try:
        key_path, trust_path = gp1.write_keypair(Path(args.out), args.alg, issuer=args.issuer)
    except (OSError, EdgeAgentError) as exc:
        return fail("pass", str(exc))
    kid = gp1.TrustList.load(trust_path).entries[0].kid.hex()
    emit(args, {"key": str(key_path), "trust": str(trust_path), "kid": kid, "alg": args.alg})
    return 0


def write_png(text: str, path: Path, *, scale: int = 6) -> None:
    """The pass as a printable QR (alphanumeric mode, ECL Q, 4-module quiet zone)."""
    import segno

    segno.make_qr(text, error="q", mode="alphanumeric", boost_error=False).save(
        str(path), scale=scale, border=4)


def _issue(args: argparse.Namespace) -> int:
    try:
        key = gp1.load_private_key(Path(args.key))
        valid_from = args.valid_from or datetime.now(UTC)
        # issue_pass refuses what no lane would accept; it names the bad field.
        text = gp1.issue_pass(
            key, release_no=args.release_no, enterprise=args.enterprise, plates=args.plate,
            containers=args.container or (), seals=args.seal or (),
            declared_gross_kg=args.gross_kg,
            tolerance_kg=args.tolerance_kg, site=args.site, gates=args.gate or (),
            direction=args.direction, issuer=args.issuer, valid_from=valid_from,
            valid_for_s=args.valid_for,
        )
    except (OSError, EdgeAgentError) as exc:
        return fail("pass", str(exc))
    end = int(valid_from.timestamp()) + args.valid_for
    if end <= time.time() and not args.allow_expired:
        # Every lane would answer pass.expired; back-dated passes are only for lab checks.
        return fail("pass", f"the pass would already be expired (valid until "
                     f"{gp1.format_time(end)}); give a later "
                     "--valid-from or a longer --valid-for (--allow-expired for a lab pass "
                     "checked with verify --at)")
    if args.png:
        try:
            write_png(text, Path(args.png))
        except (OSError, ValueError) as exc:
            return fail("pass", f"cannot write {args.png}: {exc}")
    emit(args, {"text": text, "png": args.png, "valid_from": gp1.format_time(
        int(valid_from.timestamp())), "valid_until": gp1.format_time(end)},
        lambda doc: str(doc["text"]))
    return 0


def _text_from_image(path: Path) -> tuple[str | None, str]:
    from PIL import Image

    from edge_agent.vision.pipeline import decode_frame

    try:
        with Image.open(path) as img:
            gray = img.convert("L")
    except OSError as exc:
        return None, f"cannot read image {path}: {exc}"
    import numpy as np

    texts = [r.text for r in decode_frame(np.asarray(gray))]
    passes = [t for t in texts if t.startswith(gp1.PREFIX)]
    if passes:
        return passes[0], ""
    if texts:
        return texts[0], ""
    return None, f"no QR code found in {path}"


def _print_verdict(result: dict[str, Any], *, as_json: bool) -> None:
    if as_json:
        print(json.dumps(result, ensure_ascii=False))
        return
    if result["valid"]:
        claims = result["pass"]
        print(f"VALID  release {claims['release_no']}  {claims['enterprise']}  "
              f"plates {', '.join(claims['plates'])}  {claims['declared_gross_kg']} kg")
    else:
        print(f"REJECTED  {result['reason']}  {result.get('detail', '')}".rstrip())


def _verify(args: argparse.Namespace) -> int:
    if (args.text is None) == (args.image is None):
        return fail("pass", "give the pass TEXT or --image IMG (exactly one)")
    try:
        trust = gp1.TrustList.load(Path(args.trust))
    except EdgeAgentError as exc:
        return fail("pass", str(exc))
    text, error = (args.text, "") if args.image is None else _text_from_image(Path(args.image))
    if text is None:
        _print_verdict({"valid": False, "reason": gp1.BAD_FORMAT, "pass": None,
                        "detail": error}, as_json=args.json)
        return 1
    now = args.at.timestamp() if args.at else time.time()
    verdict = gp1.verify_pass(text, trust=trust, site=args.site, gate=args.gate,
                              direction=args.direction, now=now)
    if args.ledger and verdict.valid and verdict.claims is not None:
        from edge_agent.drivers.pass_ledger import PassLedger

        try:
            with PassLedger(Path(args.ledger)) as ledger:
                first_use = ledger.mark_used(verdict.claims.cti, exp=verdict.claims.exp,
                                             now=now, lane="lanectl")
        except EdgeAgentError as exc:
            return fail("pass", str(exc))
        if not first_use:
            verdict = gp1.Verdict(valid=False, reason=gp1.ALREADY_USED, claims=verdict.claims,
                                  detail="cti already used")
    result = verdict.to_json()
    if verdict.detail:
        result["detail"] = verdict.detail
    _print_verdict(result, as_json=args.json)
    return 0 if verdict.valid else 1


def span(seconds: float) -> str:
    """A duration for people: ``45s``, ``12m 5s``, ``1h 59m``, ``3d 2h``."""
    s = int(abs(seconds))
    days, hours, minutes = s // 86400, s % 86400 // 3600, s % 3600 // 60
    if days:
        return f"{days}d {hours}h"
    if hours:
        return f"{hours}h {minutes}m"
    return f"{minutes}m {s % 60}s" if minutes else f"{s}s"


def pass_dates(claims: dict[str, Any], now: float) -> dict[str, str | None]:
    """iat/nbf/exp as ISO 8601 UTC, and where ``now`` stands: not yet, expires in, expired."""
    nbf, exp = claims.get("nbf"), claims.get("exp")
    if nbf is not None and now < nbf:
        state = f"not valid yet: valid in {span(nbf - now)}"
    elif exp is not None and now >= exp:
        state = f"expired {span(now - exp)} ago"
    elif exp is not None:
        state = f"expires in {span(exp - now)}"
    else:
        state = None
    return {"iat": gp1.format_time(claims.get("iat")), "nbf": gp1.format_time(nbf),
            "exp": gp1.format_time(exp), "now": gp1.format_time(int(now)), "state": state}


def _inspect_text(info: dict[str, Any]) -> str:
    dates = info["dates"]
    claims = {k: v for k, v in info["claims"].items() if k not in ("iat", "nbf", "exp")}
    head = [f"alg       {info['alg']}  kid {info['kid']}  (signature NOT verified: use "
            "`lanectl pass verify`)",
            f"issued    {dates['iat']}", f"valid     {dates['nbf']} .. {dates['exp']}",
            f"now       {dates['now']}: {dates['state']}"]  # fmt: skip
    return "\n".join(head) + "\n" + text(claims)


def _inspect(args: argparse.Namespace) -> int:
    try:
        info = gp1.inspect_pass(args.text)
    except ValueError as exc:
        if not args.json:
            return fail("pass inspect", f"not a readable GP1 pass: {exc}", 1)
        print(json.dumps({"ok": False, "error": str(exc), "reason": gp1.BAD_FORMAT}))
        return 1
    now = args.at.timestamp() if args.at else time.time()
    info["dates"] = pass_dates(info["claims"], now)
    emit(args, info, _inspect_text)
    return 0


def register(subparsers: Any) -> None:
    parser = command(subparsers, "pass", "issue, verify and inspect GP1 release passes",
                     "lanectl pass inspect 'GP1:...'",
                     "lanectl pass verify 'GP1:...' --trust trust.json --site BZ01 --gate G3")
    sub = parser.add_subparsers(dest="pass_command", metavar="ACTION", required=True)

    p = command(sub, "keygen", "create an issuer key and a trust list holding it",
                "lanectl pass keygen --out lab-keys/")
    p.add_argument("--out", required=True, metavar="DIR", help="folder for the key and trust list")
    p.add_argument("--alg", choices=("ed25519", "es256"), default="ed25519",
                   help="signature algorithm (default ed25519)")
    p.add_argument("--issuer", default="customs", help=argparse.SUPPRESS)
    add_json(p)
    p.set_defaults(func=_keygen)

    p = command(sub, "issue", "sign a pass and print its QR text",
                "lanectl pass issue --key lab-keys/issuer.key.pem --release-no REL-1 "
                "--enterprise ACME --plate AB123CD --gross-kg 31240 --site BZ01 --gate G3 "
                "--png pass.png")
    p.add_argument("--key", required=True, metavar="KEY.pem", help="issuer private key")
    p.add_argument("--release-no", required=True, help="customs release number")
    p.add_argument("--enterprise", required=True, help="the releasing enterprise")
    p.add_argument("--plate", action="append", required=True,
                   help="truck plate (repeat for a trailer)")
    p.add_argument("--container", action="append", help="container number (repeatable)")
    p.add_argument("--seal", action="append", metavar="ID",
                   help="seal number on the load, mechanical or e-seal (repeatable)")
    p.add_argument("--gross-kg", type=int, required=True, help="declared gross weight, kg")
    p.add_argument("--tolerance-kg", type=int, help="allowed difference to the declared weight")
    p.add_argument("--site", required=True, help="site code the pass is valid at")
    p.add_argument("--gate", action="append", help="gate code (repeatable; none: any gate)")
    p.add_argument("--direction", choices=gp1.DIRECTIONS, default="exit",
                   help="lane direction (default exit)")
    p.add_argument("--issuer", default="customs", help="issuer name (default customs)")
    p.add_argument("--valid-from", type=parse_instant, metavar="ISO8601",
                   help="start of validity (default now; no offset = UTC)")
    p.add_argument("--valid-for", type=parse_duration, default=2 * 3600, metavar="DURATION",
                   help="validity, e.g. 90s, 30m, 2h, 1d (default 2h)")
    p.add_argument("--allow-expired", action="store_true",
                   help="issue even if the pass has already expired (lab tests with verify --at)")
    p.add_argument("--png", metavar="FILE", help="also write the QR code as a PNG")
    add_json(p)
    p.set_defaults(func=_issue)

    p = command(sub, "verify", "verify a pass for a lane, as the lane would",
                "lanectl pass verify --image pass.png --trust trust.json --site BZ01 --gate G3")
    p.add_argument("text", nargs="?", metavar="TEXT", help="the pass text (GP1:...)")
    p.add_argument("--image", metavar="IMG", help="read the pass from a photo instead")
    p.add_argument("--trust", required=True, metavar="FILE", help="trust list (trust.json)")
    p.add_argument("--site", required=True, help="this lane's site code")
    p.add_argument("--gate", help="this lane's gate code")
    p.add_argument("--direction", choices=gp1.DIRECTIONS, default="exit",
                   help="this lane's direction (default exit)")
    p.add_argument("--at", type=parse_instant, metavar="ISO8601",
                   help="verify as of this time (default now)")
    p.add_argument("--ledger", metavar="DB", help="record a valid pass as used in this ledger")
    add_json(p)
    p.set_defaults(func=_verify)

    p = command(sub, "inspect", "decode a pass without trusting it: claims and dates",
                "lanectl pass inspect 'GP1:...'", "lanectl pass inspect 'GP1:...' --json")
    p.add_argument("text", metavar="TEXT", help="the pass text (GP1:...)")
    p.add_argument("--at", type=parse_instant, metavar="ISO8601",
                   help="say whether it is valid at this time (default now)")
    add_json(p)
    p.set_defaults(func=_inspect)
