"""Send a little traffic through two features and two tiers, for `modelplane report`.

    modelplane serve --config examples/economics.yaml &
    python examples/traffic.py
    modelplane report --config examples/economics.yaml
"""

from __future__ import annotations

import sys

import openai

BASE_URL = "http://127.0.0.1:8400/v1"
QUESTIONS = ["Where is my order?", "How do I reset my password?", "Can I change my plan?", "Is there a refund?"]


def main(rounds: int = 5) -> None:
    free = openai.OpenAI(base_url=BASE_URL, api_key="free-demo-key", max_retries=0)
    pro = openai.OpenAI(base_url=BASE_URL, api_key="pro-demo-key", max_retries=0)
    served = 0
    for _ in range(rounds):
        for question in QUESTIONS:
            for client in (free, pro):
                client.chat.completions.create(
                    model="support-reply", messages=[{"role": "user", "content": question}], max_tokens=24
                )
                served += 1
            pro.chat.completions.create(
                model="summarize", messages=[{"role": "user", "content": f"Summarize: {question}"}], max_tokens=24
            )
            served += 1
    try:
        free.chat.completions.create(model="summarize", messages=[{"role": "user", "content": "hi"}], max_tokens=8)
    except openai.PermissionDeniedError as exc:
        print(f"free tier on summarize: {exc.status_code} ({exc.body})")
    print(f"{served} servings sent; now run: modelplane report --config examples/economics.yaml")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 5)
