"""An aiortc participant of a Roost call: another WebRTC stack than the
browser's and the server's. It joins a room's call over the WebSocket
protocol, answers the server's offers of its receiving connection, listens
for a while and prints, as JSON, how many audio tracks it received and how
many audio frames it decoded from them, the same of video, and how many
REMB messages it sent (aiortc sends no transport-wide feedback: it
estimates its bandwidth from the send time in the packets, and says so in
REMB, which the server then fits the video to).

    python3 aiortc_participant.py WS_URL TOKEN ROOM_ID SECONDS
"""

import asyncio
import json
import logging
import os
import sys

import aioice.ice
import aiortc.rtcrtpreceiver
import websockets
from aiortc import RTCBundlePolicy, RTCConfiguration, RTCPeerConnection, RTCSessionDescription

# aiortc's ICE leaves loopback out of its host candidates; the test runs on loopback.
aioice.ice.get_host_addresses = lambda use_ipv4, use_ipv6: ["127.0.0.1"]


# The bitrates of the REMB messages aiortc sends, as it packs them.
rembs: list[int] = []
_pack_remb_fci = aiortc.rtcrtpreceiver.pack_remb_fci


def _packing_remb(bitrate, ssrcs):
    rembs.append(bitrate)
    return _pack_remb_fci(bitrate, ssrcs)


aiortc.rtcrtpreceiver.pack_remb_fci = _packing_remb


async def main(ws_url: str, token: str, room_id: str, seconds: float) -> None:
    frames: dict[str, int] = {}
    video: dict[str, int] = {}
    # max-bundle, as browsers do. With aiortc's default (balanced) policy the
    # second and later media sections of the kind that is not first in the
    # offer stay on a transport of their own that never connects.
    pc = RTCPeerConnection(
        RTCConfiguration(iceServers=[], bundlePolicy=RTCBundlePolicy.MAX_BUNDLE)
    )

    @pc.on("track")
    def on_track(track):
        counts = frames if track.kind == "audio" else video
        counts[track.id] = 0

        async def read():
            while True:
                try:
                    await track.recv()
                except Exception:
                    return
                counts[track.id] += 1

        asyncio.ensure_future(read())

    async with websockets.connect(ws_url, subprotocols=["roost.v1", "bearer." + token]) as ws:
        next_id = 0
        pending: dict[str, asyncio.Future] = {}

        async def request(frame: dict) -> dict:
            nonlocal next_id
            next_id += 1
            frame["id"] = str(next_id)
            fut = asyncio.get_running_loop().create_future()
            pending[frame["id"]] = fut
            await ws.send(json.dumps(frame))
            return await fut

        async def on_offer(call_id: str, sdp: str) -> None:
            await pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type="offer"))
            await pc.setLocalDescription(await pc.createAnswer())
            await request({"type": "sfu.answer", "call_id": call_id, "sdp": pc.localDescription.sdp})

        async def reader() -> None:
            async for text in ws:
                f = json.loads(text)
                if f["type"] in ("ack", "nack") and f["id"] in pending:
                    pending.pop(f["id"]).set_result(f)
                elif f["type"] == "sfu.offer":
                    asyncio.ensure_future(on_offer(f["call_id"], f["sdp"]))

        task = asyncio.ensure_future(reader())
        hello = await request({"type": "hello"})
        assert hello["type"] == "ack", hello
        joined = await request({"type": "call.join", "room_id": room_id})
        assert joined["type"] == "ack", joined
        await asyncio.sleep(seconds)
        result = {
            "topology": joined["result"]["topology"],
            "audio_tracks": len(frames),
            "audio_tracks_receiving": sum(1 for n in frames.values() if n > 0),
            "audio_frames": sum(frames.values()),
            "video_tracks_receiving": sum(1 for n in video.values() if n > 0),
            "video_frames": sum(video.values()),
            "remb_sent": len(rembs),
            "last_remb": rembs[-1] if rembs else None,
            "connection": pc.connectionState,
        }
        task.cancel()
    await pc.close()
    print(json.dumps(result))


if __name__ == "__main__":
    if os.environ.get("AIORTC_DEBUG"):
        logging.basicConfig(level=logging.DEBUG, stream=sys.stderr)
    asyncio.run(main(sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4])))
