"""Drive PyPI ``klingai-api`` (its ``api.KlingAiAPI``) through the fake Kling API; runs in the
clients' own virtualenv (``.ci/clients/venv``), never in klingcost's.

argv[1]: JSON ``{"base_url", "access_key", "secret_key", "jobs": [{"id", "method", "args"}]}``.
Prints one JSON line per job: its id, the create answer's task id, each status it polled, and the
final task (``data``). The only setting changed on the client is its base URL (``base``, a class
attribute it reads when the session opens); its code is used as published.
"""

from __future__ import annotations

import json
import sys
import time

import api  # klingai-api's module (the wheel installs it at the top level)

QUERIES = {"text2video": "get_text2video", "image2video": "get_image2video"}


def main() -> None:
    config = json.loads(sys.argv[1])
    client = api.KlingAiAPI(config["access_key"], config["secret_key"])
    client.base = config["base_url"]  # the one-line setting: where the API is
    with client as kling:  # opens the session: signs a JWT, checks it on /account/costs
        for job in config["jobs"]:
            created = getattr(kling, job["method"])(**job["args"])
            task_id = created["data"]["task_id"]
            query = getattr(kling, QUERIES[job["method"]])
            seen: list[str] = []
            deadline = time.monotonic() + 20
            while True:
                data = query(task_id)["data"]
                if not seen or seen[-1] != data["task_status"]:
                    seen.append(data["task_status"])
                if data["task_status"] in ("succeed", "failed") or time.monotonic() > deadline:
                    break
                time.sleep(0.05)
            line = {"id": job["id"], "task_id": task_id, "statuses": seen, "task": data}
            print(json.dumps(line), flush=True)


if __name__ == "__main__":
    main()
