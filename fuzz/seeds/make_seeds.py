"""Write the fuzzers' seed corpus (committed; rerun to regenerate): tiny GGUF models with a
byte-level BPE and a SentencePiece vocabulary, chat templates, and sampling parameters.
Needs `pip install gguf numpy`. Run from the repository root: python3 fuzz/seeds/make_seeds.py
"""
import json
import os

import numpy as np
from gguf import GGUFWriter, TokenType

OUT = os.path.join(os.path.dirname(__file__))
CHATML = ("{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' + message['content']"
          " + '<|im_end|>' + '\\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}")
LLAMA3 = ("{{ bos_token }}{% for message in messages %}{{ '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n'"
          " + message['content'] | trim + '<|eot_id|>' }}{% endfor %}{% if add_generation_prompt %}"
          "{{ '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{% endif %}")
SYSTEM_DEFAULT = ("{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
                  "{{ '<|im_start|>system\\nYou are helpful.<|im_end|>\\n' }}{% endif %}{{ '<|im_start|>' + message['role']"
                  " + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}{% endfor %}{% if add_generation_prompt %}"
                  "{{ '<|im_start|>assistant\\n' }}{% endif %}")
# Templates that grow values exponentially in few instructions: the limits must stop them.
HOSTILE = {
    "doubling": "{% set ns = namespace(s='ab') %}{% for i in range(40) %}{% set ns.s = ns.s ~ ns.s %}{% endfor %}{{ ns.s }}",
    "macro_doubling": "{% macro d(s, n) %}{% if n %}{{ d(s + s, n - 1) }}{% else %}{{ s }}{% endif %}{% endmacro %}{{ d('ab', 40) }}",
    "replace": "{% set ns = namespace(s='ab') %}{% for m in messages * 30 %}{% set ns.s = ns.s|replace('a', ns.s) %}{% endfor %}{{ ns.s }}",
}


def byte_chars():
    """GPT-2's byte → printable character table."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return [chr(c) for _, c in sorted(zip(bs, cs))]


def model(path, vocab, types, extra):
    d, ffn, heads, kv = 32, 64, 2, 1
    w = GGUFWriter(path, "llama")
    w.add_block_count(1)
    w.add_context_length(64)
    w.add_embedding_length(d)
    w.add_feed_forward_length(ffn)
    w.add_head_count(heads)
    w.add_head_count_kv(kv)
    w.add_layer_norm_rms_eps(1e-5)
    w.add_rope_freq_base(10000.0)
    w.add_token_list(vocab)
    w.add_token_types(types)
    extra(w)
    rng = np.random.default_rng(1)
    f = lambda *shape: (rng.standard_normal(shape) * 0.1).astype(np.float32)
    hd = d // heads
    w.add_tensor("token_embd.weight", f(len(vocab), d))
    w.add_tensor("output_norm.weight", np.ones(d, np.float32))
    w.add_tensor("blk.0.attn_norm.weight", np.ones(d, np.float32))
    w.add_tensor("blk.0.ffn_norm.weight", np.ones(d, np.float32))
    w.add_tensor("blk.0.attn_q.weight", f(d, d))
    w.add_tensor("blk.0.attn_k.weight", f(kv * hd, d))
    w.add_tensor("blk.0.attn_v.weight", f(kv * hd, d))
    w.add_tensor("blk.0.attn_output.weight", f(d, d))
    w.add_tensor("blk.0.ffn_gate.weight", f(ffn, d))
    w.add_tensor("blk.0.ffn_up.weight", f(ffn, d))
    w.add_tensor("blk.0.ffn_down.weight", f(d, ffn))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def bpe(w, template):
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre("smollm")
    w.add_token_merges(["Ġ t", "h e", "Ġt he", "i n", "Ġ a"])
    w.add_bos_token_id(1)
    w.add_eos_token_id(2)
    w.add_add_bos_token(False)
    w.add_chat_template(template)


def spm(w):
    w.add_tokenizer_model("llama")
    w.add_token_scores([0.0] * 3 + [0.0] * 256 + [float(-i) for i in range(6)])
    w.add_bos_token_id(1)
    w.add_eos_token_id(2)
    w.add_chat_template(LLAMA3)


def main():
    for d in ("gguf", "tokenizer", "template", "sampler"):
        os.makedirs(os.path.join(OUT, d), exist_ok=True)
    controls = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    words = ["Ġt", "he", "Ġthe", "in", "Ġa"]
    vocab = controls + byte_chars() + words
    types = [TokenType.CONTROL] * 3 + [TokenType.NORMAL] * (256 + len(words))
    for name, template in [("chatml", CHATML), ("system_default", SYSTEM_DEFAULT)]:
        model(os.path.join(OUT, "gguf", f"bpe_{name}.gguf"), vocab, types, lambda w, t=template: bpe(w, t))
    sp_vocab = ["<unk>", "<s>", "</s>"] + [f"<0x{b:02X}>" for b in range(256)] + ["▁", "▁t", "he", "▁the", "in", "▁a"]
    sp_types = [TokenType.UNKNOWN, TokenType.CONTROL, TokenType.CONTROL] + [TokenType.BYTE] * 256 + [TokenType.NORMAL] * 6
    model(os.path.join(OUT, "gguf", "spm.gguf"), sp_vocab, sp_types, spm)
    for f in os.listdir(os.path.join(OUT, "gguf")):
        with open(os.path.join(OUT, "gguf", f), "rb") as src, open(os.path.join(OUT, "tokenizer", f), "wb") as dst:
            dst.write(src.read())
    for name, src in [("chatml", CHATML), ("llama3", LLAMA3), ("system_default", SYSTEM_DEFAULT)]:
        with open(os.path.join(OUT, "template", name), "w") as out:
            out.write(src + "\0You are kind.\0Hi <|im_end|>\0Hello!")
    for name, src in HOSTILE.items():
        with open(os.path.join(OUT, "template", name), "w") as out:
            out.write(src + "\0a\0b")
    for i, params in enumerate([
        {},
        {"temperature": 0.0},
        {"temperature": 0.7, "top_k": 40, "top_p": 0.9, "min_p": 0.05, "seed": 7},
        {"repetition_penalty": 1.3, "repeat_last_n": 16, "frequency_penalty": 0.5, "presence_penalty": -0.5},
        {"logit_bias": [[5, -1e30], [6, 2.5]], "top_logprobs": 5, "max_tokens": 3, "stop": ["\n"]},
    ]):
        with open(os.path.join(OUT, "sampler", f"params{i}.json"), "w") as out:
            json.dump(params, out)


main()
