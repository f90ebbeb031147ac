// The dedicated worker the engine runs in by default (index.js starts it): calls come in as
// { id, method, args }, answers go out as { id, result } or { id, error: { code, message } },
// and a generation's tokens as { id, event }. { method: "abort", args: { id } } stops generation
// `id` within one token.

import { Host } from "./host.js";

const host = new Host();
const aborted = new Set();

function reply(id, body) {
  postMessage({ id, ...body });
}

function failure(e) {
  return { code: e?.code ?? "internal", message: e?.message ?? String(e) };
}

self.onmessage = async ({ data: { id, method, args } }) => {
  try {
    switch (method) {
      case "load":
        reply(id, { result: await host.load(args, (progress) => reply(id, { event: { progress } })) });
        break;
      case "generate": {
        const onToken = (event) => reply(id, { event });
        const result = await host.generate(args.ids, args.params, onToken, () => aborted.has(id));
        aborted.delete(id);
        reply(id, { result });
        break;
      }
      case "generateChoices": {
        const onToken = (index, event) => reply(id, { event: { index, event } });
        const { ids, params, n, bestOf } = args;
        const result = await host.generateChoices(ids, params, n, bestOf, onToken, () => aborted.has(id));
        aborted.delete(id);
        reply(id, { result });
        break;
      }
      case "evaluate": {
        const onChunk = (chunk) => reply(id, { event: { chunk } });
        const result = await host.evaluate(args.text, args.options, onChunk, () => aborted.has(id));
        aborted.delete(id);
        reply(id, { result });
        break;
      }
      case "abort":
        aborted.add(args.id);
        reply(id, { result: null });
        break;
      default:
        reply(id, { result: host[method](...(args ?? [])) ?? null });
    }
  } catch (e) {
    aborted.delete(id);
    reply(id, { error: failure(e) });
  }
};
