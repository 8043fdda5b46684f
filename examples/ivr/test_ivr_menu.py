"""The IVR menu, tested with the scxml fixture on virtual time (run with pytest)."""


def test_digit_routes_to_its_queue(scxml):
    call = scxml("ivr-menu.scxml")
    assert call.outbox[0].data == {"prompt": "menu"}
    call.send("dtmf", {"digit": "2"})
    assert call.outbox[-1].event == "route.request"
    assert call.outbox[-1].data == {"queue": "support", "tries": 1}
    call.send("route.done")
    assert call.final == "connected"


def test_silence_replays_the_menu_then_hands_over(scxml):
    call = scxml("ivr-menu.scxml")
    call.advance(4.9)
    assert call.data["tries"] == 1
    call.advance(0.1)
    assert call.data["tries"] == 2
    call.send("dtmf", {"digit": "9"})
    assert call.data["tries"] == 3
    call.advance(5)
    assert call.final == "operator"
    assert [sent.data["prompt"] for sent in call.outbox] == ["menu", "menu-again", "menu-again"]
