"""Serverless (function-as-a-service) platforms: nothing lost when the process is frozen.

A platform such as AWS Lambda freezes the process once a handler's outcome is posted, and
may reclaim it without thawing it again: background sending cannot be relied on. So every
invocation's records are delivered before its outcome leaves (docs/DESIGN.md section 6b):

* :mod:`.aws_lambda` patches the Lambda runtime client: automatic under AWS Lambda;
* :func:`serverless` (``@gf.serverless``) does the same around any handler;
* :mod:`.deliver` holds the rule both follow: flush until the deadline minus a margin,
  spool the rest, resend it when the next invocation begins.

This package is imported when ``gf.serverless`` is first used, or at ``import
gf_integrations`` inside the Lambda runtime; it never imports the runtime itself.
"""

from __future__ import annotations

from .aws_lambda import install as install_aws_lambda
from .decorator import serverless
from .deliver import MARGIN

__all__ = ["MARGIN", "install_aws_lambda", "serverless"]
