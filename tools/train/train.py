#!/usr/bin/env python3
"""Trains the default model: transformers' DeepseekV3ForCausalLM on CPU (fp32), on the corpus of
prepare_data.py with the tokenizer of train_tokenizer.py.

DeepSeek-V3's auxiliary-loss-free balancing is done here (transformers does not): every MoE
layer's router top-k ids are counted during the step, and after the optimizer step each
expert's e_score_correction_bias moves by gamma * sign(mean load - its load).

Checkpoints (model, optimizer, step, RNG) go to tools/train/out/ckpt.pt every --ckpt-every
steps; rerun the same command to resume. At the end the model is written in the Hugging Face
format (BF16, e_score_correction_bias in F32) to --output.

Usage (from the repository root):
  nohup /work/venv/bin/python tools/train/train.py --steps 1400 > tools/train/out/train.log &
"""
import argparse
import json
import math
import os
import random
import time

import torch
from transformers import AutoTokenizer, DeepseekV3Config, DeepseekV3ForCausalLM

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "out")


def model_config(vocab_size):
    return DeepseekV3Config(
        vocab_size=vocab_size, hidden_size=256, intermediate_size=768, moe_intermediate_size=128,
        num_hidden_layers=5, first_k_dense_replace=1, num_attention_heads=4,
        num_key_value_heads=4, q_lora_rank=128, kv_lora_rank=64, qk_nope_head_dim=32,
        qk_rope_head_dim=16, v_head_dim=32, n_shared_experts=1, n_routed_experts=32,
        num_experts_per_tok=4, n_group=4, topk_group=2, norm_topk_prob=True,
        routed_scaling_factor=2.5, max_position_embeddings=2048, rope_theta=10000.0,
        rope_interleave=True, rms_norm_eps=1e-6, tie_word_embeddings=False, bos_token_id=0,
        eos_token_id=1, pad_token_id=None, initializer_range=0.02, attention_dropout=0.0,
        num_nextn_predict_layers=0)


def tokenize_split(tok, path):
    """All documents of a split as one id stream: text as BOS + ids + EOS, conversations rendered
    with the chat template (which writes BOS and EOS itself)."""
    ids = []
    with open(path) as f:
        for line in f:
            r = json.loads(line)
            if "text" in r:
                ids += [tok.bos_token_id] + tok(r["text"], add_special_tokens=False)["input_ids"]
                ids.append(tok.eos_token_id)
            else:
                text = tok.apply_chat_template(r["messages"], tokenize=False)
                ids += tok(text, add_special_tokens=False)["input_ids"]
    return torch.tensor(ids, dtype=torch.long)


def load_data(seq_len):
    """{"train": [rows, L+1], "heldout": [rows, L+1], "vocab_size": V}, cached in out/ (int16)."""
    cache = os.path.join(OUT, f"tokens_{seq_len}.pt")
    if os.path.exists(cache):
        data = torch.load(cache)
        return {k: (v.long() if torch.is_tensor(v) else v) for k, v in data.items()}
    tok = AutoTokenizer.from_pretrained(os.path.join(OUT, "tokenizer"))
    data = {"vocab_size": len(tok)}
    for split in ("train", "heldout"):
        ids = tokenize_split(tok, os.path.join(HERE, "data", split + ".jsonl"))
        n = (len(ids) - 1) // seq_len
        # Row i: ids[i*L : i*L + L + 1] (inputs and shifted targets).
        data[split] = torch.stack([ids[i * seq_len:i * seq_len + seq_len + 1] for i in range(n)])
    torch.save({k: (v.to(torch.int16) if torch.is_tensor(v) else v) for k, v in data.items()}, cache)
    return data


class LoadCounter:
    """Counts router top-k ids per MoE layer through forward hooks on the routers."""

    def __init__(self, model):
        self.routers = [layer.mlp.gate for layer in model.model.layers if hasattr(layer.mlp, "gate")]
        self.counts = [torch.zeros(r.num_experts) for r in self.routers]
        for i, r in enumerate(self.routers):
            r.register_forward_hook(self.hook(i))

    def hook(self, i):
        def record(module, inputs, output):
            topk = output[2]
            counts = torch.bincount(topk.flatten(), minlength=module.num_experts).float()
            self.counts[i] = self.counts[i].to(counts.device) + counts
        return record

    def reset(self):
        for c in self.counts:
            c.zero_()

    def update_bias(self, gamma):
        """DeepSeek-V3: bias_i += gamma * sign(mean load - load_i). Returns max/mean per layer."""
        imbalance = []
        with torch.no_grad():
            for r, c in zip(self.routers, self.counts):
                r.e_score_correction_bias += gamma * torch.sign(c.mean() - c)
                imbalance.append(float(c.max() / c.mean()))
        return imbalance


def lr_at(step, args):
    if step < args.warmup:
        return args.lr * (step + 1) / args.warmup
    frac = (step - args.warmup) / max(1, args.steps - args.warmup)
    return args.lr * (args.min_lr_ratio + (1 - args.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * frac)))


@torch.no_grad()
def evaluate(model, rows, batch):
    model.eval()
    total, count = 0.0, 0
    for i in range(0, len(rows), batch):
        x = rows[i:i + batch]
        out = model(input_ids=x, labels=x, use_cache=False)
        # labels are shifted inside the model: L predictions per row of L + 1 ids.
        n = x.shape[0] * (x.shape[1] - 1)
        total += float(out.loss) * n
        count += n
    model.train()
    return total / count


def save_state(model, directory, max_bytes=15 << 20):
    """The fp32 state dict as safetensors files of at most max_bytes each (state-NN.safetensors;
    the device machine returns files of up to 16 MiB), plus the config."""
    from safetensors.torch import save_file
    os.makedirs(directory, exist_ok=True)
    for old in os.listdir(directory):
        if old.startswith("state-"):
            os.remove(os.path.join(directory, old))
    shard, size, n = {}, 0, 0
    items = list(model.state_dict().items())
    for i, (name, t) in enumerate(items):
        t = t.detach().float().contiguous().cpu()
        if t.dim() == 3:  # fused experts: one file may not hold a layer's worth, split per expert
            parts = {f"{name}#{e}": t[e].clone() for e in range(t.shape[0])}
        else:
            parts = {name: t}
        for key, value in parts.items():
            if size + value.numel() * 4 > max_bytes and shard:
                save_file(shard, os.path.join(directory, f"state-{n:02d}.safetensors"))
                shard, size, n = {}, 0, n + 1
            shard[key] = value
            size += value.numel() * 4
    if shard:
        save_file(shard, os.path.join(directory, f"state-{n:02d}.safetensors"))
    model.config.to_json_file(os.path.join(directory, "train_config.json"))


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--steps", type=int, default=1400)
    p.add_argument("--time-budget", type=float, default=0,
                   help="seconds: the schedule follows elapsed time and stops there (not steps)")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--seq-len", type=int, default=256)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--min-lr-ratio", type=float, default=0.1)
    p.add_argument("--warmup", type=int, default=50)
    p.add_argument("--weight-decay", type=float, default=0.1)
    p.add_argument("--bias-gamma", type=float, default=1e-3)
    p.add_argument("--eval-every", type=int, default=200)
    p.add_argument("--eval-rows", type=int, default=64)
    p.add_argument("--ckpt-every", type=int, default=50)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--device", default="cpu")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--state-dir", default=os.path.join(OUT, "state"),
                   help="where the final (and, with a time budget, periodic) weights go")
    p.add_argument("--keep-best", action="store_true",
                   help="evaluate the whole held-out split at every evaluation and keep the best "
                        "weights (early stopping when the corpus is seen many times)")
    p.add_argument("--bench", type=int, default=0, help="time this many steps, save nothing")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    os.makedirs(OUT, exist_ok=True)
    dev = torch.device(args.device)
    torch.backends.cuda.matmul.allow_tf32 = True
    data = load_data(args.seq_len)
    torch.manual_seed(args.seed)
    config = model_config(data["vocab_size"])
    config._attn_implementation = "sdpa"
    model = DeepseekV3ForCausalLM(config).to(dev)
    model.train()
    n_params = sum(p.numel() for p in model.parameters())
    train_rows, heldout_rows = data["train"], data["heldout"].to(dev)
    planned = f"{args.time_budget:.0f} s" if args.time_budget else (
        f"{args.steps} steps = {args.steps * args.batch * args.seq_len / 1e6:.2f} M tokens")
    print(f"params {n_params / 1e6:.2f} M; train {train_rows.numel() / 1e6:.2f} M tokens "
          f"({len(train_rows)} rows), heldout {heldout_rows.numel() / 1e6:.3f} M tokens; "
          f"batch {args.batch} x {args.seq_len}; {planned} on {args.device}", flush=True)
    decay = [p for n, p in model.named_parameters() if p.dim() >= 2 and "gate.weight" not in n]
    no_decay = [p for n, p in model.named_parameters() if not (p.dim() >= 2 and "gate.weight" not in n)]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": args.weight_decay},
                             {"params": no_decay, "weight_decay": 0.0}],
                            lr=args.lr, betas=(0.9, 0.95), eps=1e-8)
    counter = LoadCounter(model)
    step = 0
    ckpt_path = os.path.join(OUT, "ckpt.pt")
    order, order_epoch = None, -1
    if os.path.exists(ckpt_path) and not args.bench and not args.time_budget:
        ckpt = torch.load(ckpt_path, weights_only=False)
        model.load_state_dict(ckpt["model"])
        opt.load_state_dict(ckpt["opt"])
        step = ckpt["step"]
        print(f"resumed at step {step}", flush=True)
    eval_rows = heldout_rows[:args.eval_rows]
    best = float("inf")
    t_start = last = last_save = time.time()
    epoch_rows = len(train_rows)
    while True:
        elapsed = time.time() - t_start
        if args.bench and step >= args.bench:
            break
        if not args.bench and (elapsed >= args.time_budget if args.time_budget else step >= args.steps):
            break
        if args.time_budget:  # the same warmup + cosine shape over time instead of steps
            lr = lr_at(int(args.steps * elapsed / args.time_budget), args) if step >= args.warmup \
                else lr_at(step, args)
        else:
            lr = lr_at(step, args)
        for g in opt.param_groups:
            g["lr"] = lr
        epoch, begin = divmod(step * args.batch, epoch_rows)
        if order is None or order_epoch != epoch:  # a fresh shuffle every epoch, seeded by it
            order = torch.randperm(epoch_rows, generator=torch.Generator().manual_seed(
                args.seed * 1000 + epoch))
            order_epoch = epoch
        idx = order[begin:begin + args.batch]
        if len(idx) < args.batch:
            idx = torch.cat([idx, order[:args.batch - len(idx)]])
        x = train_rows[idx].to(dev)
        counter.reset()
        out = model(input_ids=x, labels=x, use_cache=False)
        loss = out.loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        gnorm = float(torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0))
        opt.step()
        imbalance = counter.update_bias(args.bias_gamma)
        step += 1
        if step % 10 == 0 or args.bench:
            now = time.time()
            tps = (10 if not args.bench else 1) * args.batch * args.seq_len / (now - last)
            last = now
            print(f"step {step} epoch {epoch} loss {float(loss.detach()):.4f} lr {lr:.2e} "
                  f"gnorm {gnorm:.2f} tok/s {tps:.0f} elapsed {now - t_start:.0f}s max/mean load "
                  + " ".join(f"{v:.2f}" for v in imbalance), flush=True)
        if args.bench:
            continue
        if step % args.eval_every == 0:
            rows = heldout_rows if args.keep_best else eval_rows
            value = evaluate(model, rows, args.batch)
            print(f"eval step {step} heldout_loss {value:.4f}", flush=True)
            if args.keep_best and value < best:
                best = value
                save_state(model, args.state_dir)
                print(f"best so far: step {step}, saved", flush=True)
        if args.time_budget and not args.keep_best and time.time() - last_save > 60:
            save_state(model, args.state_dir)
            last_save = time.time()
        if not args.time_budget and step % args.ckpt_every == 0:
            torch.save({"model": model.state_dict(), "opt": opt.state_dict(), "step": step,
                        "args": vars(args)}, ckpt_path + ".tmp")
            os.replace(ckpt_path + ".tmp", ckpt_path)
    if args.bench:
        return
    heldout = evaluate(model, heldout_rows, args.batch)
    print(f"final step {step} tokens {step * args.batch * args.seq_len} heldout_loss {heldout:.4f} "
          f"perplexity {math.exp(heldout):.3f} ({heldout_rows.shape[0]} rows of {args.seq_len}) "
          f"elapsed {time.time() - t_start:.0f}s", flush=True)
    if not args.keep_best or heldout < best:
        save_state(model, args.state_dir)
        print("saved", args.state_dir, flush=True)
    else:
        print(f"kept the best evaluation (heldout_loss {best:.4f}) in {args.state_dir}", flush=True)


if __name__ == "__main__":
    main()
