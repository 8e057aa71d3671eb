"""Writes one secret file with layerkit.put_secret, for tests/test_layerkit_secrets.py.

RC_SECRET_DEST, RC_SECRET_CONTENT, RC_SECRET_USER, RC_SECRET_GROUP and RC_SECRET_MODE say
what to write (the tests run it with pyinfra's @local connector into a temporary directory).
"""

import os

from runner_ctl.layerkit import put_secret

put_secret(
    name="Test secret file",
    content=os.environ["RC_SECRET_CONTENT"],
    dest=os.environ["RC_SECRET_DEST"],
    user=os.environ["RC_SECRET_USER"],
    group=os.environ["RC_SECRET_GROUP"],
    mode=os.environ["RC_SECRET_MODE"],
)
