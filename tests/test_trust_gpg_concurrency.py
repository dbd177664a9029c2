"""One GNUPGHOME, many signers at once, on real gpg in real processes.

Two reconciles (or an operator signing while the controller signs) share the controller's
GNUPGHOME and its one gpg-agent. Each :class:`~fleetcd.trust.gpg.Signer` stopped that agent when it
closed, under the feet of the others, which then failed with a false ``no secret key`` (exit 4)
or ``signing failed: Broken pipe``. Now only the last Signer out stops it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from fleetcd.errors import SetupError
from fleetcd.trust.gpg import Keyring, Signer
from tests.gpgkeys import KeyFactory

ROOT = Path(__file__).resolve().parent.parent
PROCESSES = 4
SIGNATURES_EACH = 8  # the old code failed about every other signature at 4 x 10


def signer_main(argv: list[str]) -> None:
    """Subprocess entry: sign ``count`` times in ``home``, each with a fresh Signer (as every
    reconcile does), verify each signature; print a JSON list of the failures."""
    home, fingerprint, public, count = Path(argv[0]), argv[1], Path(argv[2]).read_bytes(), int(argv[3])
    failures: list[str] = []
    with Keyring.from_armored({"keys/controller.asc": public}) as keyring:
        for index in range(count):
            data = f"root {index} of pid {os.getpid()}\n".encode()
            try:
                with Signer(home) as signer:
                    signature = signer.sign_detached(data, fingerprint)
            except SetupError as exc:
                failures.append(str(exc).splitlines()[0])
                continue
            verdict = keyring.verify_detached(data, signature)
            if not verdict.valid or verdict.fingerprint != fingerprint:
                failures.append(verdict.detail)
    print(json.dumps(failures))


def test_shared_gnupghome_under_concurrency_signs_and_verifies(tmp_path: Path, keys: KeyFactory) -> None:
    home = tmp_path / "controller-gnupghome"
    with Signer(home) as signer:
        fingerprint = signer.generate_key("controller", "controller@fleet.test")
        (tmp_path / "controller.asc").write_bytes(signer.export_public(fingerprint))
    script = "import sys; from tests.test_trust_gpg_concurrency import signer_main; signer_main(sys.argv[1:])"
    args = [str(home), fingerprint, str(tmp_path / "controller.asc"), str(SIGNATURES_EACH)]
    running = [
        subprocess.Popen(
            [sys.executable, "-c", script, *args], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        for _ in range(PROCESSES)
    ]
    failures: list[str] = []
    for process in running:
        out, err = process.communicate(timeout=300)
        assert process.returncode == 0, err.decode()[-3000:]
        failures += json.loads(out)
    assert failures == []
    assert not _agent_running(home), "the last signer out leaves no gpg-agent behind"


def _agent_running(home: Path) -> bool:
    done = subprocess.run(
        ["gpg-connect-agent", "--homedir", str(home), "--no-autostart", "/bye"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    return done.returncode == 0 and "no gpg-agent running" not in done.stderr
