// Function calling through the official openai SDK: a model fine-tuned to call get_weather (OpenAiSdkTests trains it)
// answers with tool_calls — plain, streamed (the SDK assembles the deltas), and in the SDK's runTools loop.
import { test } from "node:test";
import assert from "node:assert/strict";
import OpenAI from "openai";

const client = new OpenAI({ baseURL: process.env.GPUD_BASE_URL, apiKey: process.env.GPUD_API_KEY });
const model = "tiny-tools-caller";
const tools = [
  { type: "function", function: { name: "get_weather", description: "Weather in a city", parameters: { type: "object", properties: { city: { type: "string" } } } } },
  { type: "function", function: { name: "get_time", parameters: { type: "object", properties: {} } } },
];
const ask = { model, messages: [{ role: "user", content: "Weather in Oslo?" }], tools, temperature: 0, max_tokens: 120 };

test("chat.completions.create returns the call as tool_calls", async () => {
  const completion = await client.chat.completions.create(ask);
  const choice = completion.choices[0];
  assert.equal(choice.finish_reason, "tool_calls");
  assert.equal(choice.message.content, null);
  assert.equal(choice.message.tool_calls.length, 1);
  assert.match(choice.message.tool_calls[0].id, /^call_/);
  assert.equal(choice.message.tool_calls[0].function.name, "get_weather");
  assert.deepEqual(JSON.parse(choice.message.tool_calls[0].function.arguments), { city: "Oslo" });
});

test("chat.completions.stream assembles the streamed call", async () => {
  const stream = client.chat.completions.stream(ask);
  let content = "";
  stream.on("content", (delta) => { content += delta; });
  const final = await stream.finalChatCompletion();
  assert.equal(content, "");
  assert.equal(final.choices[0].finish_reason, "tool_calls");
  const call = final.choices[0].message.tool_calls[0];
  assert.equal(call.function.name, "get_weather");
  assert.deepEqual(JSON.parse(call.function.arguments), { city: "Oslo" });
});

test("runTools calls the local function with the model's arguments and sends its result back", async () => {
  const calls = [];
  const runner = client.chat.completions.runTools({
    ...ask,
    // The same two tools the model was trained with (the tiny model has memorised its prompt, tool list included).
    tools: [
      { type: "function", function: { name: "get_weather", parameters: tools[0].function.parameters, parse: JSON.parse, function: (args) => { calls.push(args); return { temp: 4 }; } } },
      { type: "function", function: { name: "get_time", parameters: tools[1].function.parameters, function: () => "12:00" } },
    ],
  }, { maxChatCompletions: 2 });
  await runner.done().catch(() => {}); // what the tiny model says after the result is whatever it is: the loop ran
  assert.deepEqual(calls[0], { city: "Oslo" });
  const toolMessage = runner.messages.find((m) => m.role === "tool");
  assert.equal(toolMessage.content, JSON.stringify({ temp: 4 }));
});

test("tool_choice forces a call: a named function, or 'required' where the model would answer in text", async () => {
  const hi = { ...ask, messages: [{ role: "user", content: "Say hi" }], max_tokens: 300 };
  assert.equal((await client.chat.completions.create(hi)).choices[0].message.tool_calls, undefined); // trained to answer in text

  const named = await client.chat.completions.create({ ...hi, tool_choice: { type: "function", function: { name: "get_time" } } });
  assert.equal(named.choices[0].finish_reason, "tool_calls");
  assert.equal(named.choices[0].message.tool_calls.length, 1);
  assert.equal(named.choices[0].message.tool_calls[0].function.name, "get_time");
  assert.equal(typeof JSON.parse(named.choices[0].message.tool_calls[0].function.arguments), "object");

  const required = await client.chat.completions.stream({ ...hi, tool_choice: "required" }).finalChatCompletion();
  assert.ok(required.choices[0].message.tool_calls.length >= 1);
  for (const call of required.choices[0].message.tool_calls) assert.ok(["get_weather", "get_time"].includes(call.function.name), call.function.name);
});

test("responses: a call comes back as a function_call item, whole and from the stream helper", async () => {
  const flat = tools.map((t) => ({ type: "function", ...t.function }));
  const request = { model, input: "Weather in Oslo?", tools: flat, temperature: 0, max_output_tokens: 120 };
  const response = await client.responses.create(request);
  assert.equal(response.output.length, 1);
  const [call] = response.output;
  assert.equal(call.type, "function_call");
  assert.equal(call.name, "get_weather");
  assert.match(call.call_id, /^call_/);
  assert.deepEqual(JSON.parse(call.arguments), { city: "Oslo" });
  assert.equal(response.output_text, "");

  const stream = client.responses.stream(request);
  let done = null;
  stream.on("response.function_call_arguments.done", (event) => { done = event; });
  const final = await stream.finalResponse();
  assert.deepEqual(JSON.parse(done.arguments), { city: "Oslo" });
  assert.equal(final.output[0].name, "get_weather");

  // The call and its output go back as input items; the model answers (whatever the tiny model says).
  const next = await client.responses.create({ ...request, input: [{ role: "user", content: "Weather in Oslo?" }, call, { type: "function_call_output", call_id: call.call_id, output: JSON.stringify({ temp: 4 }) }], max_output_tokens: 5 });
  assert.ok(["completed", "incomplete"].includes(next.status));
});
