"""Which serverless platform this process runs on, read from its environment.

A serverless platform freezes (or throttles to nothing) the process between invocations, so
the settings change there (docs/DESIGN.md section 6b): sending stays in this process, and on
a detected platform undelivered work is spooled under its temporary folder.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

AWS_LAMBDA = "aws-lambda"
CLOUD_RUN = "google-cloud-run"
VERCEL = "vercel"

# AWS_LAMBDA_RUNTIME_API is what every runtime interface client (awslambdaric included)
# reads to reach the Runtime API; AWS_LAMBDA_FUNCTION_NAME is set in every Lambda sandbox.
_LAMBDA_VARS = ("AWS_LAMBDA_RUNTIME_API", "AWS_LAMBDA_FUNCTION_NAME")
# K_SERVICE: Cloud Run services and functions (and Knative); FUNCTION_TARGET: the Functions
# Framework, which Cloud Run functions and Cloud Functions run
_CLOUD_RUN_VARS = ("K_SERVICE", "FUNCTION_TARGET")


def detect_platform(environ: Mapping[str, str] | None = None) -> str | None:
    """``"aws-lambda"``, ``"google-cloud-run"``, ``"vercel"`` or None (not serverless)."""
    env = os.environ if environ is None else environ
    if any(env.get(name) for name in _LAMBDA_VARS):
        return AWS_LAMBDA
    if any(env.get(name) for name in _CLOUD_RUN_VARS):
        return CLOUD_RUN
    if env.get("VERCEL"):
        return VERCEL
    return None


def default_spool_dir(environ: Mapping[str, str] | None = None) -> str:
    """The spool folder on a detected platform: ``greenflash-spool`` in its temporary folder
    (``/tmp`` on Lambda, Cloud Run and Vercel: private to the sandbox)."""
    env = os.environ if environ is None else environ
    return os.path.join(env.get("TMPDIR") or "/tmp", "greenflash-spool")
