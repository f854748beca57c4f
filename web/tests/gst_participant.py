"""A GStreamer webrtcbin participant of a Roost SFU call: another WebRTC
stack than the browsers' and the server's, and a stricter one about
re-offers that add tracks. It joins a room's call over the WebSocket
protocol of docs/protocol.md, publishes a test tone (Opus) and test
pattern (VP8), answers the server's offers of its receiving connection,
and at the end prints, as JSON, what reached each of that connection's
source pads (RTP packets and the SSRCs they carried) at the start and at
the end of a measuring window that every participant of the test shares.

    python3 gst_participant.py WS_URL TOKEN ROOM_ID MEASURE_AT_MS MEASURE_MS

MEASURE_AT_MS is a time since the epoch; the program ends MEASURE_MS after it.
"""

import asyncio
import json
import os
import random
import sys
import threading
import time

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstRtp", "1.0")
gi.require_version("GstSdp", "1.0")
gi.require_version("GstWebRTC", "1.0")
from gi.repository import GLib, Gst, GstRtp, GstSdp, GstWebRTC  # noqa: E402

import websockets  # noqa: E402

SEND = """
webrtcbin name=send bundle-policy=max-bundle
audiotestsrc is-live=true wave=sine freq=440 ! audioconvert ! audioresample
  ! opusenc frame-size=20 ! rtpopuspay name=apay pt=111 ssrc={audio_ssrc}
  ! application/x-rtp,media=audio,encoding-name=OPUS,payload=111,ssrc=(uint){audio_ssrc}
  ! send.
videotestsrc is-live=true pattern=ball ! video/x-raw,width=320,height=240,framerate=15/1 ! videoconvert
  ! vp8enc deadline=1 keyframe-max-dist=30 ! rtpvp8pay name=vpay pt=96 ssrc={video_ssrc}
  ! application/x-rtp,media=video,encoding-name=VP8,payload=96,ssrc=(uint){video_ssrc} ! send.
"""


class Pads:
    """RTP packets per source pad of the receiving webrtcbin, by the mid
    of the pad's transceiver, and the SSRCs among them. Written from
    GStreamer's streaming threads, read from asyncio's."""

    def __init__(self):
        self.lock = threading.Lock()
        self.by_pad = {}

    def add(self, pad):
        name = pad.get_name()
        entry = {"pad": name, "packets": 0, "ssrcs": {}, "kind": None, "mid": None}
        with self.lock:
            self.by_pad[name] = entry
        transceiver = pad.get_property("transceiver")

        def probe(_pad, info):
            buf = info.get_buffer()
            ok, rtp = GstRtp.RTPBuffer.map(buf, Gst.MapFlags.READ)
            if not ok:
                return Gst.PadProbeReturn.OK
            ssrc = rtp.get_ssrc()
            rtp.unmap()
            with self.lock:
                entry["packets"] += 1
                entry["ssrcs"][str(ssrc)] = entry["ssrcs"].get(str(ssrc), 0) + 1
                if entry["mid"] is None and transceiver is not None:
                    entry["mid"] = transceiver.get_property("mid")
            return Gst.PadProbeReturn.OK

        pad.add_probe(Gst.PadProbeType.BUFFER, probe)
        caps = pad.get_current_caps() or pad.query_caps(None)
        if caps and caps.get_size() > 0:
            entry["kind"] = caps.get_structure(0).get_string("media")

    def snapshot(self):
        with self.lock:
            # By pad: webrtcbin gives a media section a second pad when a
            # second SSRC lands on it.
            return {
                e["pad"]: {
                    "mid": e["mid"],
                    "kind": e["kind"],
                    "packets": e["packets"],
                    "ssrcs": dict(e["ssrcs"]),
                }
                for e in self.by_pad.values()
            }


class Sent:
    """RTP packets this participant sent, per kind."""

    def __init__(self):
        self.lock = threading.Lock()
        self.counts = {"audio": 0, "video": 0}

    def watch(self, pad, kind):
        def probe(_pad, info):
            # Payloaders push lists of packets as often as single ones.
            n = 1
            if info.type & Gst.PadProbeType.BUFFER_LIST:
                n = info.get_buffer_list().length()
            with self.lock:
                self.counts[kind] += n
            return Gst.PadProbeReturn.OK

        pad.add_probe(Gst.PadProbeType.BUFFER | Gst.PadProbeType.BUFFER_LIST, probe)

    def snapshot(self):
        with self.lock:
            return dict(self.counts)


async def await_promise(loop, start):
    """Calls `start(promise)` and waits, without blocking asyncio, for the reply."""
    fut = loop.create_future()

    def done(promise):
        loop.call_soon_threadsafe(lambda: fut.done() or fut.set_result(promise))

    promise = Gst.Promise.new_with_change_func(done)
    start(promise)
    p = await fut
    if p.wait() != Gst.PromiseResult.REPLIED:
        raise RuntimeError("webrtcbin did not reply")
    return p.get_reply()


def description(kind, sdp_text):
    ok, msg = GstSdp.SDPMessage.new_from_text(sdp_text)
    if ok != GstSdp.SDPResult.OK:
        raise RuntimeError("unparsable SDP")
    return GstWebRTC.WebRTCSessionDescription.new(kind, msg)


def reply_error(reply):
    if reply is None:
        return None
    if reply.has_field("error"):
        return str(reply.get_value("error"))
    return None


async def main(ws_url, token, room_id, measure_at_ms, measure_ms):
    Gst.init(None)
    loop = asyncio.get_running_loop()
    glib = GLib.MainLoop()
    threading.Thread(target=glib.run, daemon=True).start()

    report = {
        "offers": 0,
        "offer_errors": [],
        "tracks": {},
        "windows": [],
        "gstreamer": Gst.version_string(),
    }
    pads = Pads()
    sent = Sent()

    # webrtcbin writes a=ssrc only for caps that carry an SSRC; without it
    # (GStreamer sends no mid header extension) the server cannot tell
    # which media section a packet belongs to.
    audio_ssrc, video_ssrc = random.sample(range(1, 2**31), 2)
    send_pipe = Gst.parse_launch(SEND.format(audio_ssrc=audio_ssrc, video_ssrc=video_ssrc))
    send = send_pipe.get_by_name("send")
    for pay, kind in (("apay", "audio"), ("vpay", "video")):
        sent.watch(send_pipe.get_by_name(pay).get_static_pad("src"), kind)
    # webrtcbin makes sendrecv transceivers for linked pads; the server
    # only receives from this connection.
    for i in range(2):
        t = send.emit("get-transceiver", i)
        if t is not None:
            t.set_property("direction", GstWebRTC.WebRTCRTPTransceiverDirection.SENDONLY)

    recv_pipe = Gst.Pipeline.new("recv")
    recv = Gst.ElementFactory.make("webrtcbin", "recv")
    recv.set_property("bundle-policy", GstWebRTC.WebRTCBundlePolicy.MAX_BUNDLE)
    recv_pipe.add(recv)

    def on_pad(_el, pad):
        if pad.get_direction() != Gst.PadDirection.SRC:
            return
        pads.add(pad)
        sink = Gst.ElementFactory.make("fakesink")
        sink.set_property("sync", False)
        recv_pipe.add(sink)
        sink.sync_state_with_parent()
        pad.link(sink.get_static_pad("sink"))

    recv.connect("pad-added", on_pad)
    recv_pipe.set_state(Gst.State.PLAYING)

    async with websockets.connect(ws_url, subprotocols=["roost.v1", "bearer." + token]) as ws:
        next_id = 0
        pending = {}

        async def request(frame):
            nonlocal next_id
            next_id += 1
            frame["id"] = str(next_id)
            fut = loop.create_future()
            pending[frame["id"]] = fut
            await ws.send(json.dumps(frame))
            f = await fut
            if f["type"] != "ack":
                raise RuntimeError(f"{frame['type']}: {f.get('code')} {f.get('message')}")
            return f.get("result")

        call = {}
        offers = asyncio.Queue()

        async def answer_offers():
            while True:
                sdp = await offers.get()
                report["offers"] += 1
                try:
                    offer = description(GstWebRTC.WebRTCSDPType.OFFER, sdp)
                    reply = await await_promise(
                        loop, lambda p: recv.emit("set-remote-description", offer, p)
                    )
                    if reply_error(reply):
                        raise RuntimeError(reply_error(reply))
                    reply = await await_promise(
                        loop, lambda p: recv.emit("create-answer", None, p)
                    )
                    if reply_error(reply) or not reply.has_field("answer"):
                        raise RuntimeError(reply_error(reply) or "no answer")
                    answer = reply.get_value("answer")
                    await await_promise(
                        loop, lambda p: recv.emit("set-local-description", answer, p)
                    )
                    if os.environ.get("STACKS_DEBUG"):
                        print("ANSWER\n" + answer.sdp.as_text(), file=sys.stderr)
                    await request(
                        {
                            "type": "sfu.answer",
                            "call_id": call["id"],
                            "sdp": answer.sdp.as_text(),
                        }
                    )
                except Exception as e:  # noqa: BLE001 - reported to the test
                    report["offer_errors"].append(str(e))

        async def reader():
            async for text in ws:
                f = json.loads(text)
                if f["type"] in ("ack", "nack") and f.get("id") in pending:
                    pending.pop(f["id"]).set_result(f)
                elif f["type"] == "sfu.offer":
                    if os.environ.get("STACKS_DEBUG"):
                        print("OFFER\n" + f["sdp"], file=sys.stderr)
                    for t in f.get("tracks") or []:
                        report["tracks"][t["mid"]] = t
                    offers.put_nowait(f["sdp"])

        tasks = [asyncio.ensure_future(reader()), asyncio.ensure_future(answer_offers())]
        await request({"type": "hello"})
        joined = await request({"type": "call.join", "room_id": room_id})
        call["id"] = joined["call_id"]
        report["participant_id"] = joined["participant_id"]
        report["topology"] = joined["topology"]

        send_pipe.set_state(Gst.State.PLAYING)
        reply = await await_promise(loop, lambda p: send.emit("create-offer", None, p))
        if reply_error(reply) or not reply.has_field("offer"):
            raise RuntimeError("create-offer: " + str(reply_error(reply)))
        offer = reply.get_value("offer")
        await await_promise(loop, lambda p: send.emit("set-local-description", offer, p))
        # The server is ICE-lite and lists its candidates in its SDP; this
        # side's own candidates need not reach it (its checks name them), so
        # the offer goes out once gathering is done and carries them all.
        for _ in range(100):
            if send.get_property("ice-gathering-state") == GstWebRTC.WebRTCICEGatheringState.COMPLETE:
                break
            await asyncio.sleep(0.05)
        local = send.get_property("local-description").sdp.as_text()
        result = await request({"type": "sfu.offer", "call_id": call["id"], "sdp": local})
        if os.environ.get("STACKS_DEBUG"):
            print("SEND OFFER\n" + local + "\nSEND ANSWER\n" + result["sdp"], file=sys.stderr)
        answer = description(GstWebRTC.WebRTCSDPType.ANSWER, result["sdp"])
        reply = await await_promise(loop, lambda p: send.emit("set-remote-description", answer, p))
        if reply_error(reply):
            raise RuntimeError("send answer: " + reply_error(reply))

        await asyncio.sleep(max(0.0, measure_at_ms / 1000 - time.time()))
        report["windows"].append({"received": pads.snapshot(), "sent": sent.snapshot()})
        await asyncio.sleep(max(0.0, (measure_at_ms + measure_ms) / 1000 - time.time()))
        report["windows"].append({"received": pads.snapshot(), "sent": sent.snapshot()})
        report["send_connection"] = send.get_property("connection-state").value_nick
        report["recv_connection"] = recv.get_property("connection-state").value_nick
        for t in tasks:
            t.cancel()
    print(json.dumps(report), flush=True)
    send_pipe.set_state(Gst.State.NULL)
    recv_pipe.set_state(Gst.State.NULL)
    glib.quit()


if __name__ == "__main__":
    asyncio.run(
        main(sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4]), float(sys.argv[5]))
    )
