"""Ask the running gateway one question with the official `openai` SDK.

    modelplane serve &          # the embedded default: the bundled local model on 127.0.0.1:8400
    python examples/hello.py "What is the capital of France?"
"""

from __future__ import annotations

import sys
import time
import urllib.error
import urllib.request

import openai

BASE_URL = "http://127.0.0.1:8400"


def wait_until_ready(timeout: float = 120.0) -> None:
    """The first start assembles and loads the local model; wait for /readyz."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{BASE_URL}/readyz", timeout=2) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.5)
    sys.exit(f"the gateway at {BASE_URL} did not become ready within {timeout:.0f}s; is `modelplane serve` running?")


def main() -> None:
    question = " ".join(sys.argv[1:]) or "What is the capital of France?"
    wait_until_ready()
    client = openai.OpenAI(base_url=f"{BASE_URL}/v1", api_key="not-needed-locally")
    raw = client.chat.completions.with_raw_response.create(
        model="chat", messages=[{"role": "user", "content": question}], max_tokens=64, temperature=0
    )
    answer = raw.parse()
    print(answer.choices[0].message.content)
    print(
        f"\n[model {raw.headers['x-modelplane-model']}, {answer.usage.total_tokens if answer.usage else '?'} tokens, "
        f"cost ${float(raw.headers['x-modelplane-cost-usd']):.6f}, serving {raw.headers['x-modelplane-serving']}]"
    )


if __name__ == "__main__":
    main()
