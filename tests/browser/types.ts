// Compiled (never run) by run.mjs with `tsc --noEmit --strict`: the package's declarations
// describe the API the way an app uses it.
import { createEngine, WebGpuLlmError, listCachedModels, deleteCachedModel, clearModelCache, listModels, estimateMemory } from "../../pkg/index.js";
import type { CatalogModel, Choice, ChunkPerplexity, Perplexity, ChatCompletion, ChatCompletionChunk, Completion, CompletionChunk, EngineInfo, FunctionTool, Generation, MemoryEstimate, ModelEstimate, TokenPiece, ToolCall } from "../../pkg/index.js";

export async function app(file: File, signal: AbortSignal): Promise<string> {
  const engine = await createEngine({
    model: file,
    backend: "auto",
    contextSize: 2048,
    onProgress: ({ stage, loadedBytes, totalBytes }) => console.log(stage, loadedBytes / totalBytes),
  });
  const info: EngineInfo = await engine.info();
  const eog: string = info.template.eog.map((t) => `${t.id}:${t.text}`).join() + String(info.template.has_chat_template);
  const known: string = info.catalog.matched ? info.catalog.entry?.license ?? "" : info.catalog.note ?? "";
  const models: CatalogModel[] = await listModels({ baseUrl: "/models/" });
  const need: MemoryEstimate = estimateMemory(models[0], 2048, { f16: true });
  const done: Completion = await engine.completions.create({ prompt: "Once upon a time", max_tokens: 4, logprobs: 2 });
  let raw = done.choices[0].text + (done.choices[0].logprobs?.text_offset.join() ?? "") + done.usage.completion_tokens;
  for await (const chunk of await engine.completions.create({ prompt: [1, 2, 3], stream: true, signal })) {
    const c: CompletionChunk = chunk;
    raw += c.choices[0].text + (c.choices[0].finish_reason ?? "");
  }
  raw += eog + known + need.total_bytes + models.filter((m) => m.present && !m.cached).map((m) => m.url).join();
  const whole: ChatCompletion = await engine.chat.completions.create({
    messages: [{ role: "user", content: "Hi" }],
    temperature: 0.2,
    logit_bias: { 2: -Infinity },
    stop: ["\n"],
    signal,
    truncation: "auto",
  });
  let text = (whole.choices[0].message.content ?? "") + String(whole.usage?.dropped_messages);
  const tool: FunctionTool = { type: "function", function: { name: "f", parameters: { type: "object" } } };
  const called = await engine.chat.completions.create({
    messages: [{ role: "user", content: "Hi" }],
    tools: [tool],
    tool_choice: { type: "function", function: { name: "f" } },
  });
  const json = await engine.chat.completions.create({
    messages: [{ role: "user", content: "Hi" }],
    response_format: { type: "json_schema", json_schema: { name: "o", schema: { type: "object" } } },
  });
  text += json.choices[0].message.content ?? "";
  const calls: ToolCall[] = called.choices[0].message.tool_calls ?? [];
  text += calls.map((c) => c.function.name + c.function.arguments).join() + called.choices[0].finish_reason;
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
  const fast = await createEngine({ model: "/big.gguf", draftModel: "/small.gguf", onProgress: (p) => console.log(p.draft ?? false) });
  const three: ChatCompletion = await fast.chat.completions.create({
    messages: [{ role: "user", content: "Hi" }], n: 3, seed: 7, draft_tokens: 4, lookup: 3, response_format: { type: "json_object" },
  });
  text += three.choices.map((c) => `${c.index}:${c.message.content}:${c.finish_reason}`).join();
  const best: Completion = await fast.completions.create({ prompt: "Hi", n: 2, best_of: 4, draftTokens: 0 });
  text += best.choices[1].text;
  const last = fast.lastGeneration;
  text += last ? `${last.accepted_tokens}/${last.drafted_tokens}` : "";
  const choice = last as Choice;
  text += choice.mean_logprob + String(choice.seed) + (await fast.info()).draft?.context_size;
  const chunks: ChunkPerplexity[] = [];
  const ppl: Perplexity = await fast.evaluate("some text", { contextSize: 64, maxChunks: 2, onProgress: (c) => chunks.push(c), signal });
  text += `${ppl.ppl}±${ppl.ppl_stderr} ${ppl.chunks.map((c) => c.cumulative_ppl).join()} ${chunks.length}`;
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
  const cached: number = (await listCachedModels()).reduce((n, m) => n + (m.complete ? m.bytes ?? 0 : 0), 0);
  const est: ModelEstimate = await estimateMemory(["/m-00001-of-00002.gguf", "/m-00002-of-00002.gguf"], {
    backend: "gpu", contextSize: 512, gpuLimits: { maxBufferBytes: 1 << 28 }, memoryLimitBytes: 1 << 30,
  });
  const split = await createEngine({
    model: "/m-00001-of-00002.gguf", cache: "opfs", memoryLimitBytes: 1 << 30,
    onProgress: ({ placedBytes, totalBytes }) => console.log(placedBytes / totalBytes),
  });
  text += (est.fits ? "" : est.reason ?? "") + (await split.info()).estimate.largest_buffer_bytes;
  const gone: boolean = (await deleteCachedModel("/model.gguf")) || (await clearModelCache());
  return text + raw + String(result?.tokens.length) + cached + gone;
}
