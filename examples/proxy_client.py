"""A third-party Kling client through ``klingcost proxy``: PyPI ``klingai-api``, unchanged but
for its base URL. It signs Kling JWTs with the access and secret key of a proxy key.

    pip install --ignore-requires-python klingai-api==0.1.0   # declares Python 3.14; runs on 3.11
    python examples/proxy_client.py key.json http://127.0.0.1:8790

Prints the task's id, the states it went through, and its final unit deduction.
"""

import json
import sys
import time

import api  # klingai-api's module

with open(sys.argv[1]) as file:
    key = json.load(file)
client = api.KlingAiAPI(key["access_key"], key["secret_key"])
client.base = sys.argv[2] if len(sys.argv) > 2 else "http://127.0.0.1:8790"  # the one change
with client as kling:
    created = kling.text2video(prompt="a red fox", model_name="kling-v1", mode="std", duration="5")
    task_id = created["data"]["task_id"]
    seen = []
    for _ in range(200):
        task = kling.get_text2video(task_id)["data"]
        if not seen or seen[-1] != task["task_status"]:
            seen.append(task["task_status"])
        if task["task_status"] in ("succeed", "failed"):
            break
        time.sleep(0.1)
    units = task.get("final_unit_deduction")
    print(json.dumps({"task_id": task_id, "statuses": seen, "units": units}))
