"""`SmppProvider._message` keeps a one-part message's template for the next job with the
same sender and text: the frames are those a fresh encoding makes; a multipart message,
whose concatenation reference changes, is encoded anew every time."""

from __future__ import annotations

from services.dispatcher.settings import DispatcherSettings
from services.dispatcher.smpp import provider as smpp_provider
from services.dispatcher.smpp.provider import SmppConfig, SmppProvider


def provider() -> SmppProvider:
    return SmppProvider(SmppConfig.from_settings(DispatcherSettings(provider_kind="smpp")), sink=None)


def frames(templates: list, destination: str = "4790000001") -> list[bytes]:
    return [t.frame(7, destination) for t in templates]


def test_a_one_part_template_is_kept_and_makes_the_frames_a_fresh_one_makes():
    kept = provider()
    first = kept._message("RSMS", "Your code is 1234")
    assert kept._message("RSMS", "Your code is 1234") is first
    assert frames(first) == frames(provider()._message("RSMS", "Your code is 1234"))
    # Another sender or text is another template.
    assert frames(kept._message("RSMT", "Your code is 1234")) != frames(first)
    assert frames(kept._message("RSMS", "Your code is 1235")) != frames(first)


def test_a_multipart_message_is_encoded_anew_with_a_new_reference():
    kept = provider()
    text = "x" * 200  # two parts
    first, second = kept._message("RSMS", text), kept._message("RSMS", text)
    assert len(first) == len(second) == 2
    assert frames(first) != frames(second)  # the concatenation reference moved on
    assert kept._one_part == {}


def test_the_kept_templates_are_bounded(monkeypatch):
    monkeypatch.setattr(smpp_provider, "_ONE_PART_TEMPLATES", 3)
    kept = provider()
    for n in range(5):
        kept._message("RSMS", f"text {n}")
    assert list(kept._one_part) == [("RSMS", "text 2"), ("RSMS", "text 3"), ("RSMS", "text 4")]
