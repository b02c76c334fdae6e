// Inference as the official OpenAI Node SDK drives it: completions and chat, plain and streamed, against the base
// model, a fine-tuned model, one of its checkpoints and an imported PEFT adapter; then the Models API and errors.
// GPUD_BASE_URL points at a gpud serving gpud-tiny with GPUD_ADAPTER registered (OpenAiSdkTests starts one).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import OpenAI, { toFile, BadRequestError, NotFoundError } from 'openai';
import { zodResponseFormat, zodTextFormat } from 'openai/helpers/zod';
import { z } from 'zod';
import { readFileSync } from 'node:fs';
import Ajv from 'ajv';
import Ajv2020 from 'ajv/dist/2020.js';
import addFormats from 'ajv-formats';

const baseURL = process.env.GPUD_BASE_URL ?? 'http://127.0.0.1:8080/v1';
const client = new OpenAI({ baseURL, apiKey: process.env.GPUD_API_KEY ?? 'sk-local', maxRetries: 0 });
const adapter = process.env.GPUD_ADAPTER ?? 'tiny-peft';

const jsonl = Array.from({ length: 20 }, (_, i) => JSON.stringify({
  messages: [{ role: 'user', content: `Say ${i}` }, { role: 'assistant', content: `Number ${i} it is.` }],
})).join('\n') + '\n';

async function fineTune() {
  const file = await client.files.create({ file: await toFile(Buffer.from(jsonl), 'numbers.jsonl'), purpose: 'fine-tune' });
  const created = await client.fineTuning.jobs.create({
    model: 'gpud-tiny', training_file: file.id, suffix: 'serve', seed: 1,
    method: { type: 'supervised', supervised: { hyperparameters: { n_epochs: 2, batch_size: 4, learning_rate_multiplier: 10 } } },
  });
  for (let i = 0; i < 1200; i++) {
    const job = await client.fineTuning.jobs.retrieve(created.id);
    if (job.status === 'succeeded') {
      const checkpoints = [];
      for await (const c of client.fineTuning.jobs.checkpoints.list(job.id)) checkpoints.push(c);
      return { model: job.fine_tuned_model, checkpoint: checkpoints.at(-1).fine_tuned_model_checkpoint };
    }
    assert.ok(!['failed', 'cancelled'].includes(job.status), JSON.stringify(job.error));
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error('the job did not finish');
}

const trained = await fineTune();
const models = ['gpud-tiny', trained.model, trained.checkpoint, adapter];

test('completions: plain and streamed give the same text with the same seed, for base, fine-tuned, checkpoint and adapter', async () => {
  const texts = new Set();
  for (const model of models) {
    const params = { model, prompt: 'Say 3', max_tokens: 24, temperature: 0.9, seed: 1234 };
    const plain = await client.completions.create(params);
    assert.equal(plain.object, 'text_completion');
    assert.equal(plain.model, model);
    assert.equal(plain.choices.length, 1);
    assert.ok(['stop', 'length'].includes(plain.choices[0].finish_reason));
    assert.equal(plain.usage.total_tokens, plain.usage.prompt_tokens + plain.usage.completion_tokens);

    let streamed = '';
    let usage = null;
    let finish = null;
    const stream = await client.completions.create({ ...params, stream: true, stream_options: { include_usage: true } });
    for await (const chunk of stream) {
      if (chunk.usage) usage = chunk.usage;
      for (const choice of chunk.choices) {
        streamed += choice.text;
        finish = choice.finish_reason ?? finish;
      }
    }
    assert.equal(streamed, plain.choices[0].text, model);
    assert.equal(finish, plain.choices[0].finish_reason);
    assert.deepEqual(usage, plain.usage);
    texts.add(plain.choices[0].text);
  }
  assert.equal(texts.size, models.length, 'each adapter changes the output');
});

test('chat completions: plain and streamed agree; the stream sends the role first, then content', async () => {
  for (const model of models) {
    const params = { model, messages: [{ role: 'user', content: 'Say 7' }], max_completion_tokens: 20, temperature: 0.7, seed: 99 };
    const plain = await client.chat.completions.create(params);
    assert.equal(plain.object, 'chat.completion');
    assert.equal(plain.choices[0].message.role, 'assistant');

    const stream = await client.chat.completions.create({ ...params, stream: true });
    const deltas = [];
    for await (const chunk of stream) deltas.push(...chunk.choices.map((c) => c.delta));
    assert.equal(deltas[0].role, 'assistant');
    assert.equal(deltas.map((d) => d.content ?? '').join(''), plain.choices[0].message.content, model);
  }
});

test('logprobs, n and stop behave as in the contract', async () => {
  const withLogprobs = await client.chat.completions.create({
    model: trained.model, messages: [{ role: 'user', content: 'Say 1' }], max_completion_tokens: 5, temperature: 0, logprobs: true, top_logprobs: 3,
  });
  const content = withLogprobs.choices[0].logprobs.content;
  assert.equal(content.map((t) => t.token).join(''), withLogprobs.choices[0].message.content);
  assert.ok(content.every((t) => t.top_logprobs.length === 3 && t.logprob <= 0));

  const many = await client.completions.create({ model: adapter, prompt: ['a', 'b'], n: 2, max_tokens: 4, seed: 5 });
  assert.deepEqual(many.choices.map((c) => c.index), [0, 1, 2, 3]);

  const greedy = await client.completions.create({ model: 'gpud-tiny', prompt: 'Say 2', max_tokens: 12, temperature: 0 });
  const stopAt = greedy.choices[0].text.slice(3, 5);
  const stopped = await client.completions.create({ model: 'gpud-tiny', prompt: 'Say 2', max_tokens: 12, temperature: 0, stop: [stopAt] });
  assert.equal(stopped.choices[0].text, greedy.choices[0].text.slice(0, greedy.choices[0].text.indexOf(stopAt)));
  assert.equal(stopped.choices[0].finish_reason, 'stop');
});

test('JSON mode: response_format json_object answers parse as objects, whole and through the stream helper', async () => {
  const request = { model: 'gpud-tiny', messages: [{ role: 'user', content: 'Paris as JSON' }], response_format: { type: 'json_object' }, max_tokens: 300, seed: 3, n: 4 };
  const answer = await client.chat.completions.create(request);
  const stopped = answer.choices.filter((c) => c.finish_reason === 'stop');
  assert.ok(stopped.length >= 2, JSON.stringify(answer.choices));
  for (const choice of stopped) assert.equal(typeof JSON.parse(choice.message.content), 'object');

  const stream = client.chat.completions.stream({ ...request, n: 1 });
  const final = await stream.finalChatCompletion();
  assert.equal(final.choices[0].message.content, answer.choices[0].message.content);
});

test('structured outputs: parse() with a zod schema gives typed objects that ajv validates, whole and streamed; unenforceable schemas are a typed 400', async () => {
  // No free strings: a random-weight model rarely closes one, and parse() refuses answers cut by max_tokens.
  const City = z.object({
    city: z.enum(['Paris', 'Lyon']), rank: z.number().int(), coastal: z.boolean(), share: z.number().min(0).max(1),
    rivers: z.array(z.enum(['Seine', 'Rhône'])).max(2), mayor: z.enum(['Anne', 'Grégory']).nullable(),
    code: z.string().regex(/^[A-Z]{2}-\d{3}$/), // a pattern (and a string a random model finishes)
    id: z.uuid(), founded: z.iso.date(), // formats, which zod sends with a pattern too: both are enforced
    host: z.hostname(), ip: z.ipv6(), // zod's hostname pattern opens with a lookahead: ^(?=.{1,253}\.?$)…
    area: z.number().multipleOf(0.25), seats: z.int().multipleOf(5), // OpenAI's numeric keyword set
    site: z.url(), // format "uri", as Pydantic's HttpUrl sends it too
  });
  const format = zodResponseFormat(City, 'city');
  const ajv = new Ajv({ strict: false });
  addFormats(ajv); // ajv checks formats only with ajv-formats
  const validate = ajv.compile(format.json_schema.schema); // zod writes int bounds and $schema: gpud takes both
  const request = { model: 'gpud-tiny', messages: [{ role: 'user', content: 'A French city' }], response_format: format, max_tokens: 1500, temperature: 1, seed: 11 };

  const completion = await client.chat.completions.parse({ ...request, n: 4 });
  for (const choice of completion.choices) {
    assert.equal(choice.finish_reason, 'stop');
    const value = JSON.parse(choice.message.content);
    assert.ok(validate(value), `${choice.message.content}: ${JSON.stringify(validate.errors)}`);
    assert.deepEqual(choice.message.parsed, City.parse(value));
  }
  const streamed = await client.chat.completions.stream(request).finalChatCompletion();
  assert.deepEqual(streamed.choices[0].message.parsed, completion.choices[0].message.parsed);

  const pointer = { type: 'object', properties: { at: { type: 'string', format: 'json-pointer' } }, required: ['at'], additionalProperties: false };
  await assert.rejects(client.chat.completions.create({ ...request, response_format: { type: 'json_schema', json_schema: { name: 'pointer', schema: pointer } } }),
    (e) => e instanceof BadRequestError && e.param === 'response_format' && e.code === 'invalid_json_schema' && e.message.includes("'#/properties/at/format': \"json-pointer\" is not a format gpud enforces"));
});

test('structured outputs: a schema as Pydantic writes it (discriminated union, Decimal, HttpUrl, timedelta, IPv6…) gives answers ajv validates', async () => {
  // tests/fixtures/schemas/pydantic_order.json: Order.model_json_schema() of scripts/fixtures/make_schema_fixtures.py.
  const { schema } = JSON.parse(readFileSync(new URL('../fixtures/schemas/pydantic_order.json', import.meta.url), 'utf8'));
  const ajv = new Ajv2020({ strict: false });
  addFormats(ajv);
  const validate = ajv.compile(schema);
  const completion = await client.chat.completions.create({
    model: 'gpud-tiny', messages: [{ role: 'user', content: 'An order' }], n: 4, max_tokens: 2000, temperature: 1, seed: 5,
    response_format: { type: 'json_schema', json_schema: { name: 'Order', schema, strict: true } },
  });
  for (const choice of completion.choices) {
    assert.equal(choice.finish_reason, 'stop');
    const value = JSON.parse(choice.message.content);
    assert.ok(validate(value), `${choice.message.content}: ${JSON.stringify(validate.errors)}`);
  }
});

test('responses: create and stream answer as the chat completion of the same conversation does', async () => {
  const model = adapter;
  const chat = await client.chat.completions.create({
    model, messages: [{ role: 'system', content: 'Be brief.' }, { role: 'user', content: 'Say 3' }], max_completion_tokens: 10, temperature: 0,
  });
  const request = { model, instructions: 'Be brief.', input: [{ role: 'user', content: [{ type: 'input_text', text: 'Say 3' }] }], max_output_tokens: 10, temperature: 0 };
  const response = await client.responses.create(request);
  assert.match(response.id, /^resp_/);
  assert.equal(response.output_text, chat.choices[0].message.content); // output_text: the SDK's own reading of the output items
  assert.equal(response.status, chat.choices[0].finish_reason === 'length' ? 'incomplete' : 'completed');
  assert.equal(response.usage.output_tokens, chat.usage.completion_tokens);

  const stream = client.responses.stream(request);
  let deltas = '';
  stream.on('response.output_text.delta', (event) => { deltas += event.delta; });
  const final = await stream.finalResponse();
  assert.equal(deltas, response.output_text);
  assert.equal(final.output_text, response.output_text);
});

test('responses: stored, continued with previous_response_id, retrieved, listed by input item and deleted', async () => {
  const first = await client.responses.create({ model: 'gpud-tiny', input: 'hi', max_output_tokens: 6, temperature: 0 });
  assert.equal(first.store, true);
  const second = await client.responses.create({ model: 'gpud-tiny', previous_response_id: first.id, input: [{ role: 'user', content: 'more' }], max_output_tokens: 6, temperature: 0 });
  const chat = await client.chat.completions.create({
    model: 'gpud-tiny', max_completion_tokens: 6, temperature: 0,
    messages: [{ role: 'user', content: 'hi' }, { role: 'assistant', content: first.output_text }, { role: 'user', content: 'more' }],
  });
  assert.equal(second.output_text, chat.choices[0].message.content);
  assert.equal((await client.responses.retrieve(second.id)).output_text, second.output_text);
  const items = [];
  for await (const item of client.responses.inputItems.list(second.id)) items.push(item);
  assert.equal(items.length, 1);
  assert.equal(items[0].content[0].text, 'more');
  await client.responses.delete(first.id);
  await assert.rejects(client.responses.retrieve(first.id), (e) => e instanceof NotFoundError);
});

test('stored chat completions: store, retrieve, list by metadata, messages, update, delete', async () => {
  const created = await client.chat.completions.create({
    model: 'gpud-tiny', messages: [{ role: 'system', content: 'brief' }, { role: 'user', content: 'hi' }], max_tokens: 4,
    store: true, metadata: { suite: 'sdk-stored' },
  });
  const retrieved = await client.chat.completions.retrieve(created.id);
  assert.deepEqual(retrieved.choices, created.choices);
  assert.deepEqual(retrieved.metadata, { suite: 'sdk-stored' });

  const listed = [];
  for await (const c of client.chat.completions.list({ metadata: { suite: 'sdk-stored' }, limit: 1 })) listed.push(c.id);
  assert.deepEqual(listed, [created.id]);

  const messages = [];
  for await (const m of client.chat.completions.messages.list(created.id, { limit: 1 })) messages.push([m.id, m.role, m.content]);
  assert.deepEqual(messages, [[`${created.id}-0`, 'system', 'brief'], [`${created.id}-1`, 'user', 'hi']]);

  const updated = await client.chat.completions.update(created.id, { metadata: { suite: 'sdk-done' } });
  assert.deepEqual(updated.metadata, { suite: 'sdk-done' });
  assert.deepEqual(await client.chat.completions.delete(created.id), { object: 'chat.completion.deleted', id: created.id, deleted: true });
  await assert.rejects(client.chat.completions.retrieve(created.id), (e) => e instanceof NotFoundError && e.param === 'completion_id');
});

test('responses: a background response is polled to its end; a queued one can be cancelled', async () => {
  const queued = await client.responses.create({ model: 'gpud-tiny', input: 'later', max_output_tokens: 8, background: true });
  assert.equal(queued.status, 'queued');
  assert.equal(queued.background, true);
  let done = queued;
  for (let i = 0; i < 400 && ['queued', 'in_progress'].includes(done.status); i++) {
    await new Promise((r) => setTimeout(r, 25));
    done = await client.responses.retrieve(queued.id);
  }
  assert.ok(['completed', 'incomplete'].includes(done.status), done.status);
  assert.equal(done.output.at(-1).type, 'message');

  // Greedy: gpud-tiny's random weights repeat a token rather than end early, so this one is still running when cancelled.
  const long = await client.responses.create({ model: 'gpud-tiny', input: 'long', max_output_tokens: 1000, temperature: 0, background: true });
  const cancelled = await client.responses.cancel(long.id);
  assert.equal(cancelled.status, 'cancelled');
  assert.equal((await client.responses.retrieve(long.id)).status, 'cancelled');
  const err = await client.responses.create({ model: 'gpud-tiny', input: 'x', background: true, store: false }).catch((e) => e);
  assert.ok(err instanceof BadRequestError);
  assert.equal(err.param, 'store');
});

test('responses: parse() with zodTextFormat gives a typed object that ajv validates', async () => {
  const Pick = z.object({ city: z.enum(['Paris', 'Lyon']), coastal: z.boolean(), rank: z.int().min(1).max(3) });
  const format = zodTextFormat(Pick, 'pick');
  const validate = new Ajv({ strict: false }).compile(format.schema);
  const response = await client.responses.parse({ model: 'gpud-tiny', input: 'A French city', text: { format }, max_output_tokens: 400, temperature: 1 });
  assert.equal(response.status, 'completed');
  assert.ok(validate(JSON.parse(response.output_text)), response.output_text);
  assert.deepEqual(response.output_parsed, Pick.parse(JSON.parse(response.output_text)));
});

test('models: list shows every kind with its parent; deleting the fine-tuned model makes it unknown', async () => {
  const listed = [];
  for await (const m of client.models.list()) listed.push(m);
  const byId = Object.fromEntries(listed.map((m) => [m.id, m]));
  assert.equal(byId['gpud-tiny'].parent, null);
  for (const id of [trained.model, trained.checkpoint, adapter]) assert.equal(byId[id]?.parent, 'gpud-tiny', id);
  assert.equal(byId[trained.model].owned_by, 'gpud');

  const deleted = await client.models.delete(trained.model);
  assert.deepEqual(deleted, { id: trained.model, object: 'model', deleted: true });
  await assert.rejects(client.completions.create({ model: trained.model, prompt: 'x' }),
    (e) => e instanceof NotFoundError && e.status === 404 && e.code === 'model_not_found' && e.param === 'model');
  // Its checkpoint is still there.
  assert.equal((await client.models.retrieve(trained.checkpoint)).id, trained.checkpoint);
});

test('errors surface as the SDK typed errors with status, code and param', async () => {
  const cases = [
    [{ model: 'gpud-tiny', prompt: 'x', max_tokens: 5000 }, 'max_tokens', 'context_length_exceeded'],
    [{ model: 'gpud-tiny', prompt: 'x', suffix: 'y' }, 'suffix', 'unsupported_parameter'],
    [{ model: 'gpud-tiny', prompt: 'x', temperature: 3 }, 'temperature', 'number_out_of_range'],
    [{ model: 'gpud-tiny', prompt: 'x', n: 2, best_of: 1 }, 'best_of', null],
  ];
  for (const [params, param, code] of cases) {
    await assert.rejects(client.completions.create(params),
      (e) => e instanceof BadRequestError && e.status === 400 && e.param === param && e.code === code && typeof e.requestID === 'string', param);
  }
  await assert.rejects(client.chat.completions.create({ model: 'gpud-tiny', messages: [{ role: 'user', content: 'x' }], tools: [{ type: 'function', function: { name: 'f' } }], tool_choice: { type: 'function', function: { name: 'g' } } }),
    (e) => e instanceof BadRequestError && e.param === 'tool_choice.function.name');
  await assert.rejects(client.completions.create({ model: 'no-such-model', prompt: 'x' }),
    (e) => e instanceof NotFoundError && e.code === 'model_not_found');
});
