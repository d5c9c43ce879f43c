"""Loading the cluster's config: the chosen kubeconfig context, and one clear error when it fails."""

from __future__ import annotations

from pathlib import Path

import pytest

from actors.daemon.kube import KubeConfigError, load_configuration

KUBECONFIG = """apiVersion: v1
kind: Config
clusters:
- name: one
  cluster: {server: "http://127.0.0.1:1001"}
- name: two
  cluster: {server: "http://127.0.0.1:1002"}
users:
- name: u
  user: {token: secret}
contexts:
- name: first
  context: {cluster: one, user: u}
- name: second
  context: {cluster: two, user: u}
current-context: first
"""


async def test_the_current_context_is_used_unless_another_is_named(tmp_path: Path) -> None:
    path = tmp_path / "kubeconfig"
    path.write_text(KUBECONFIG)
    assert (await load_configuration(path)).host == "http://127.0.0.1:1001"
    assert (await load_configuration(path, "second")).host == "http://127.0.0.1:1002"


@pytest.mark.parametrize(
    ("text", "context", "words"),
    [
        (None, None, "does not exist"),
        (KUBECONFIG, "third", "not usable .*third"),
        ("{not: [valid", None, "not usable"),
    ],
)
async def test_a_bad_kubeconfig_is_one_clear_error(
    tmp_path: Path, text: str | None, context: str | None, words: str
) -> None:
    path = tmp_path / "kubeconfig"
    if text is not None:
        path.write_text(text)
    with pytest.raises(KubeConfigError, match=words) as caught:
        await load_configuration(path, context)
    assert "\n" not in str(caught.value)
