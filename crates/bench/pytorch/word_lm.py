"""The PyTorch reference for `cargo run -p bench -- compare`: the same textbook model
(Embedding(V, 100) -> LSTM(128) -> Linear(V)), the same masked cross-entropy, Adam with
Keras's epsilon, on the same batches (read from the file the bench writes), `--threads N`
threads, on the CPU or (`--device cuda`) a GPU. With `--skip-padding` the output layer and the
loss take only the rows whose loss weight is not 0, as ours does.
Prints one JSON line: per-step milliseconds, losses, peak RSS, and generation speed greedy and
sampled at temperature 0.8, each after one short warm-up generation."""

import argparse
import json
import resource
import time

import numpy as np
import torch
import torch.nn.functional as F


class WordLm(torch.nn.Module):
    def __init__(self, vocab, embedding_dim, hidden):
        super().__init__()
        self.embedding = torch.nn.Embedding(vocab, embedding_dim)
        self.lstm = torch.nn.LSTM(embedding_dim, hidden, batch_first=True)
        self.output = torch.nn.Linear(hidden, vocab)

    def forward(self, ids, state=None):
        h, state = self.lstm(self.embedding(ids), state)
        return self.output(h), state


def memorise(path, max_steps):
    """The NumPy passage exercise with Adam: a char LSTM(128) over one passage in windows of 50 with the state
    carried, until 0.999 * smooth + 0.001 * window loss <= 0.1. Prints steps and seconds."""
    text = open(path, encoding="utf-8").read()
    chars = sorted(set(text))
    ids = torch.tensor([chars.index(c) for c in text])
    v, t = len(chars) + 2, 50  # the same vocabulary size as ours: padding and [UNK] reserved
    ids = ids + 2
    model = WordLm(v, 40, 128)
    optim = torch.optim.Adam(model.parameters(), lr=0.01, eps=1e-7)
    smooth = np.log(v) * t
    start = time.perf_counter()
    step, pos, state = 0, 0, None
    while step < max_steps:
        if pos + 1 >= len(ids):
            pos, state = 0, None
        n = min(t, len(ids) - 1 - pos)
        x, y = ids[pos:pos + n].view(1, n), ids[pos + 1:pos + n + 1]
        logits, state = model(x, state)
        state = tuple(s.detach() for s in state)
        loss = F.cross_entropy(logits.view(n, v), y)
        optim.zero_grad(set_to_none=True)
        loss.backward()
        optim.step()
        step += 1
        pos += n
        smooth = 0.999 * smooth + 0.001 * loss.item() * n
        if smooth <= 0.1:
            break
    return {"steps": step, "seconds": time.perf_counter() - start, "smooth": smooth}


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--memorise", help="the NumPy exercise's passage: report time to its loss target")
    p.add_argument("--batches", help="the bench's batches.json")
    p.add_argument("--steps", type=int, default=8)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--gen-tokens", type=int, default=2000)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--device", default="cpu", help="cpu, or cuda for a GPU")
    p.add_argument("--compile", action="store_true", help="train the model compiled by torch.compile")
    p.add_argument("--skip-padding", action="store_true",
                   help="compute the output layer only for the rows whose loss weight is not 0")
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(42)
    if a.memorise:
        result = memorise(a.memorise, 100_000)
        result["system"] = f"PyTorch {torch.__version__}"
        print(json.dumps(result))
        return
    meta = json.load(open(a.batches))
    b, t, v = meta["batch_size"], meta["seq_len"], meta["vocab_size"]
    raw = np.fromfile(meta["file"], dtype="<u4").reshape(meta["batches"], 3, b * t)
    dev = torch.device(a.device)
    model = WordLm(v, meta["embedding_dim"], meta["hidden_size"]).to(dev)
    optim = torch.optim.Adam(model.parameters(), lr=1e-3, eps=1e-7)
    # The warm-up step compiles; generation, one token at a time, runs the plain model.
    step_model = torch.compile(model) if a.compile else model

    ms, losses = [], []
    for i in range(a.warmup + a.steps):
        rows = raw[i % meta["batches"]]
        inputs = torch.from_numpy(rows[0].astype(np.int64)).view(b, t).to(dev)
        targets = torch.from_numpy(rows[1].astype(np.int64)).to(dev)
        weights = torch.from_numpy(rows[2].view(np.float32).copy()).to(dev)
        start = time.perf_counter()
        if a.skip_padding:
            hidden, _ = step_model.lstm(step_model.embedding(inputs))
            counted = weights.nonzero().squeeze(1)
            logits = step_model.output(hidden.reshape(b * t, -1).index_select(0, counted))
            per_token = F.cross_entropy(logits, targets[counted], reduction="none")
            loss = (per_token * weights[counted]).sum() / weights.sum()
        else:
            logits, _ = step_model(inputs)
            per_token = F.cross_entropy(logits.view(b * t, v), targets, reduction="none")
            loss = (per_token * weights).sum() / weights.sum()
        optim.zero_grad(set_to_none=True)
        loss.backward()
        optim.step()
        value = loss.item()  # waits for the GPU, as ours reads its loss
        if i >= a.warmup:
            ms.append((time.perf_counter() - start) * 1000.0)
            losses.append(value)

    greedy, sampled = generation_speed(model, dev, a.gen_tokens, None), \
        generation_speed(model, dev, a.gen_tokens, 0.8)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    system = f"PyTorch {torch.__version__}" + (" + torch.compile" if a.compile else "")
    system += ", padding rows skipped" if a.skip_padding else ""
    system += "" if a.device == "cpu" else f" ({a.device})"
    print(json.dumps({"system": system, "ms": ms, "losses": losses, "peak_rss_mib": rss,
                      "gen_tokens": a.gen_tokens, "gen_greedy_tokens_per_s": greedy,
                      "gen_sampled_tokens_per_s": sampled}))


def generate(model, dev, tokens, temperature, rng):
    """`tokens` ids after the prompt [2, 3], one at a time with the state carried: greedy when
    `temperature` is None, else drawn from softmax(logits / temperature)."""
    logits, state = model(torch.tensor([[2, 3]], device=dev))
    for _ in range(tokens):
        last = logits[:, -1, :]
        if temperature is None:
            nxt = last.argmax(-1, keepdim=True)
        else:
            probs = torch.softmax(last / temperature, -1)
            nxt = torch.multinomial(probs, 1, generator=rng)
        logits, state = model(nxt, state)
    logits.cpu()


def generation_speed(model, dev, tokens, temperature):
    """Tokens per second of `generate`, after one short generation as a warm-up (ours prepares
    its decoder on its first generation in the same way)."""
    rng = torch.Generator(device=dev)
    rng.manual_seed(1)
    with torch.no_grad():
        generate(model, dev, 1, temperature, rng)
        start = time.perf_counter()
        generate(model, dev, tokens, temperature, rng)
        return tokens / (time.perf_counter() - start)


if __name__ == "__main__":
    main()
