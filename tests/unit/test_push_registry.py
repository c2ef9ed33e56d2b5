"""`smserve push` reads the account and region of an ECR registry host; other hosts need --region (issue 11)."""

from __future__ import annotations

import subprocess

import pytest

from smserve.push import PushError, split_registry
from tests.families import REPO


def test_ecr_registry_host_gives_account_and_region():
    assert split_registry("123456789012.dkr.ecr.eu-west-3.amazonaws.com", None) == ("123456789012", "eu-west-3")
    assert split_registry("123456789012.dkr.ecr.cn-north-1.amazonaws.com.cn", None) == ("123456789012",
                                                                                         "cn-north-1")
    assert split_registry("123456789012.dkr.ecr.eu-west-3.amazonaws.com", "us-east-1")[1] == "us-east-1"


def test_other_registry_needs_a_region():
    assert split_registry("127.0.0.1:5000", "us-east-1") == (None, "us-east-1")
    with pytest.raises(PushError, match="pass --region"):
        split_registry("registry.example.com", None)


def test_make_push_without_registry_says_what_to_set():
    done = subprocess.run(["make", "-s", "push", "PUSH_IMAGE=x:y"], cwd=REPO, capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 2 and "set REGISTRY=" in done.stderr, done
