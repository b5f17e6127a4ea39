// OpenAI's Node package (npm `openai`) against a served model: a completion, and a chat
// answer streamed as chunks. `node run_clients.mjs BASE_URL MODEL` prints one JSON line per
// call and exits non-zero if one fails; `--capture` ignores failures (capture.py records
// what the calls send). The package comes from target/clients/node_modules (setup.sh).
import { createRequire } from "node:module";
import { fileURLToPath } from "node:url";

const root = fileURLToPath(new URL("../../target/clients/", import.meta.url));
const OpenAI = createRequire(root)("openai");

const [baseURL, model, mode] = process.argv.slice(2);
const client = new OpenAI({ baseURL, apiKey: "unused", maxRetries: 0 });

const calls = {
  node_completion: async () => {
    const answer = await client.completions.create({ model, prompt: "recipe for", max_tokens: 12, seed: 6 });
    return { text: answer.choices[0].text, finish_reason: answer.choices[0].finish_reason };
  },
  node_chat_streamed: async () => {
    const stream = await client.chat.completions.create({
      model, messages: [{ role: "user", content: "recipe for" }], max_tokens: 12, seed: 6, stream: true,
    });
    let text = "";
    let chunks = 0;
    let finish = null;
    for await (const chunk of stream) {
      chunks += 1;
      const choice = chunk.choices[0];
      if (choice?.delta?.content) text += choice.delta.content;
      if (choice?.finish_reason) finish = choice.finish_reason;
    }
    return { text, chunks, finish_reason: finish };
  },
};

let failed = false;
for (const [name, call] of Object.entries(calls)) {
  try {
    console.log(JSON.stringify({ name, ...(await call()) }));
  } catch (error) {
    if (mode !== "--capture") {
      console.error(`${name}: ${error}`);
      failed = true;
    }
  }
}
process.exit(failed ? 1 : 0);
