"""Nothing in the kit touches the network: load, generate and score with sockets blocked."""

import os
import subprocess
import sys
import textwrap

CODE = textwrap.dedent("""
    import socket, sys

    def block(event, args):
        if event in ("socket.connect", "socket.getaddrinfo", "socket.gethostbyname"):
            raise RuntimeError(f"network access attempted: {event} {args!r}")
    sys.addaudithook(block)

    import torch
    from rlhf_helpers.models import load_policy, load_reward_pipeline
    from rlhf_helpers.data import load_reviews, load_preference_pairs
    model, tok = load_policy(device="cpu")
    pipe = load_reward_pipeline(device="cpu")
    enc = tok(["the acting was"] * 4, return_tensors="pt")
    out = model.generate(**enc, do_sample=True, max_new_tokens=8)
    scores = pipe(tok.batch_decode(out, skip_special_tokens=True), top_k=None)
    assert len(scores) == 4 and len(load_reviews("test")) and len(load_preference_pairs("test"))
    print("ok")
""")


def test_no_network_access():
    env = {k: v for k, v in os.environ.items() if not k.endswith("_OFFLINE")}  # no offline crutches
    out = subprocess.run([sys.executable, "-c", CODE], capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr[-2000:]
