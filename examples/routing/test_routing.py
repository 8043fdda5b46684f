"""The routing strategy and its invoked agent search, with the scxml fixture."""


def test_routes_the_call_to_the_agent_the_search_found(scxml):
    trace = []
    call = scxml("routing.scxml", on_transition=trace.append)
    call.send("call.arrived", {"skill": "billing"})
    request = call.outbox[0]
    assert (request.event, request.invokeid, request.data) == ("stat.request", "search", {"skill": "billing"})
    call.child("search").send("stat.reply", {"free": ["agent-7", "agent-9"]})
    assert call.configuration == {"routing"}
    assert call.outbox[-1].data == {"agent": "agent-7", "skill": "billing"}
    assert [(t.label, t.event) for t in trace if t.invokeid == "search"] == [
        ("__scxml__ -> asking", None),
        ("asking -> found", "stat.reply"),
    ]
    assert "searching -> routing" in trace


def test_queues_the_call_when_nobody_is_free(scxml):
    call = scxml("routing.scxml")
    call.send("call.arrived", {"skill": "billing"})
    call.child("search").send("stat.reply", {"free": []})
    assert call.final == "queued"
    assert [sent.event for sent in call.outbox] == ["stat.request"]
