"""Per-node credentials: each node proves which node it is.

The master holds one cluster secret (``MODELSYNC_NODE_SECRET``); a node holds only its own
token (``MODELSYNC_NODE_TOKEN``), ``node.<node_id>.<HMAC-SHA256(secret, node_id)>``, made by
``modelsync node-token NODE_ID``. A node sends it as its bearer token, unchanged; the master
recomputes the HMAC from the id inside (no table of tokens to keep), and takes a report only for
that id. A stolen token speaks for its one node; it cannot read the API, nor mint another
node's token (that needs the secret, which never leaves the master).
"""

from __future__ import annotations

import base64
import hashlib
import hmac

from modelsync.layout import is_node_id

PREFIX = "node."
SECRET_SETTING = "MODELSYNC_NODE_SECRET"  # noqa: S105 (a setting's name)
MIN_SECRET_CHARS = 16
_CONTEXT = b"modelsync node token v1\n"


def _signature(secret: str, node_id: str) -> str:
    mac = hmac.new(secret.encode(), _CONTEXT + node_id.encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(mac).decode().rstrip("=")


def node_token(secret: str, node_id: str) -> str:
    """The token of ``node_id`` under the cluster's node secret."""
    if not is_node_id(node_id):
        raise ValueError(f"{node_id!r} is not a node id (1-128 of [A-Za-z0-9_.-])")
    return f"{PREFIX}{node_id}.{_signature(secret, node_id)}"


def token_node(token: str) -> str | None:
    """The node id a token names (unverified), or None if it is no node token."""
    if not token.startswith(PREFIX):
        return None
    node_id, dot, sig = token[len(PREFIX) :].rpartition(".")
    return node_id if dot and sig and is_node_id(node_id) else None


def verified_node(secret: str, token: str) -> str | None:
    """The node id of a valid token (constant-time check), else None."""
    node_id = token_node(token)
    if node_id is None:
        return None
    expected = node_token(secret, node_id)
    return node_id if hmac.compare_digest(token.encode(), expected.encode()) else None


def token_problem(token: str | None, node_id: str) -> str | None:
    """Why a node's own settings do not fit (its token names another node), else None."""
    if token is None:
        return None
    named = token_node(token)
    if named is None:
        return (
            "MODELSYNC_NODE_TOKEN is not a node token (node.<id>.<sig>, made by "
            "`modelsync node-token NODE_ID` from the master's MODELSYNC_NODE_SECRET)"
        )
    if named != node_id:
        return (
            f"MODELSYNC_NODE_TOKEN is the token of node {named!r}, but this node is "
            f"{node_id!r} (MODELSYNC_NODE_ID)"
        )
    return None
