// Compiled (never run) by run.mjs with `tsc --noEmit --strict`: the package's declarations
// describe the API the way an app uses it.
import { createEngine, WebGpuLlmError, listCachedModels, deleteCachedModel, clearModelCache } from "../../pkg/index.js";
import type { ChatCompletion, ChatCompletionChunk, EngineInfo, Generation, TokenPiece } from "../../pkg/index.js";

export async function app(file: File, signal: AbortSignal): Promise<string> {
  const engine = await createEngine({
    model: file,
    backend: "auto",
    contextSize: 2048,
    onProgress: ({ stage, loadedBytes, totalBytes }) => console.log(stage, loadedBytes / totalBytes),
  });
  const info: EngineInfo = await engine.info();
  const whole: ChatCompletion = await engine.chat.completions.create({
    messages: [{ role: "user", content: "Hi" }],
    temperature: 0.2,
    logit_bias: { 2: -Infinity },
    stop: ["\n"],
    signal,
    truncation: "auto",
  });
  let text = whole.choices[0].message.content + String(whole.usage?.dropped_messages);
  const rated = await engine.chat.completions.create({ messages: [{ role: "user", content: "Hi" }], logprobs: true, top_logprobs: 3 });
  for (const entry of rated.choices[0].logprobs?.content ?? []) {
    text += entry.token + entry.top_logprobs.map((t) => `${t.token}:${Math.exp(t.logprob)}/${t.prob}`).join();
  }
  const stream = await engine.chat.completions.create({ messages: [{ role: "user", content: "Hi" }], stream: true });
  for await (const chunk of stream) {
    const c: ChatCompletionChunk = chunk;
    text += c.choices[0].delta.content ?? "";
  }
  const it = engine.generate("Once upon a time", { max_tokens: 4, seed: 1 });
  for await (const piece of it) {
    const p: TokenPiece = piece;
    text += p.text + p.top.map((t) => t.text).join();
  }
  const result: Generation | null = it.result;
  const knobs = engine.lastGeneration?.sampling.map((c) => `${c.from_token}:${c.params.temperature}`);
  text += knobs?.join() ?? "";
  await engine.setSampling({ top_k: 20 });
  await engine.resetChat();
  const again: EngineInfo = await engine.reload();
  text += again.backend;
  await engine.unload();
  try {
    await createEngine({ model: "/missing.gguf", backend: "gpu" });
  } catch (e) {
    if (e instanceof WebGpuLlmError && e.code === "no_webgpu") text += info.backend;
  }
  const cached: number = (await listCachedModels()).reduce((n, m) => n + (m.bytes ?? 0), 0);
  const gone: boolean = (await deleteCachedModel("/model.gguf")) || (await clearModelCache());
  return text + String(result?.tokens.length) + cached + gone;
}
