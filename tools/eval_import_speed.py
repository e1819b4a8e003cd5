"""Time `clipseek import-metadata` of N manifest rows with the 560k-clip set's columns into a Flow on the demo
model (no videos indexed: every row waits for its video), over HTTP and then again over gRPC (a re-import).

    python tools/eval_import_speed.py [--rows 20000]
"""

from __future__ import annotations

import argparse
import socket
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from clipseek.api import cli  # noqa: E402
from clipseek.engine.serve import BackgroundFlow, ServeSettings  # noqa: E402

HEADER = "mp4_id,video_label,mp4_time,mp4_txt_brief,mp4_background_image_url"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=20000)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="clipseek-import-") as folder:
        manifest = Path(folder) / "set.csv"
        rows = [f"{80000000 + i},Beach,{i % 60},夕阳下的海滩，一对情侣在散步 {i},https://example.org/{i}.jpg"
                for i in range(args.rows)]
        manifest.write_text("\n".join([HEADER, *rows]) + "\n", encoding="utf-8")
        overrides = {"model": "demo", "pretrained": None, "media_roots": [folder],
                     "workspace": str(Path(folder) / "ws")}
        with BackgroundFlow(ServeSettings(grpc_port=free_port(), http_port=free_port()), overrides) as flow:
            for address in (flow.http, flow.grpc):
                started = time.perf_counter()
                code = cli.main(["--address", address, "import-metadata", str(manifest)])
                took = time.perf_counter() - started
                print(f"{address.split(':')[0]}: {args.rows} rows in {took:.1f} s = {args.rows / took:.0f} rows/s "
                      f"(exit {code})", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
