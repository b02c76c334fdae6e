// The Batch API as the official OpenAI Node SDK uses it: upload requests with purpose 'batch', create, poll, read
// the output and error files, list, cancel. GPUD_BASE_URL points at a running gpud (SdkTests starts one).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import OpenAI, { toFile, BadRequestError } from 'openai';

const baseURL = process.env.GPUD_BASE_URL ?? 'http://127.0.0.1:8080/v1';
const client = new OpenAI({ baseURL, apiKey: process.env.GPUD_API_KEY ?? 'sk-local', maxRetries: 0 });

const line = (custom_id, body, url = '/v1/chat/completions') => JSON.stringify({ custom_id, method: 'POST', url, body });
const upload = async (lines) =>
  client.files.create({ file: await toFile(Buffer.from(lines.join('\n') + '\n'), 'requests.jsonl'), purpose: 'batch' });

async function until(id, statuses) {
  for (let i = 0; i < 600; i++) {
    const batch = await client.batches.retrieve(id);
    if (statuses.includes(batch.status)) return batch;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`batch ${id} never reached ${statuses}`);
}

const jsonl = async (fileId) => (await (await client.files.content(fileId)).text()).trim().split('\n').map((l) => JSON.parse(l));

test('a chat batch: create, poll, output and error files in input order', async () => {
  const ask = (content) => ({ model: 'gpud-tiny', messages: [{ role: 'user', content }], max_tokens: 5, temperature: 0 });
  const file = await upload([line('a', ask('one')), line('b', { ...ask('two'), model: 'missing' }), line('c', ask('three'))]);
  const created = await client.batches.create({
    input_file_id: file.id, endpoint: '/v1/chat/completions', completion_window: '24h', metadata: { suite: 'sdk' },
  });
  assert.match(created.id, /^batch_/);
  assert.equal(created.object, 'batch');
  assert.deepEqual(created.metadata, { suite: 'sdk' });

  const done = await until(created.id, ['completed', 'failed']);
  assert.equal(done.status, 'completed');
  assert.deepEqual(done.request_counts, { total: 3, completed: 2, failed: 1 });
  assert.ok(done.usage.input_tokens > 0 && done.usage.output_tokens > 0);
  assert.equal(done.usage.total_tokens, done.usage.input_tokens + done.usage.output_tokens);

  const output = await jsonl(done.output_file_id);
  assert.deepEqual(output.map((l) => l.custom_id), ['a', 'c']);
  for (const l of output) {
    assert.match(l.id, /^batch_req_/);
    assert.equal(l.response.status_code, 200);
    assert.equal(l.response.body.object, 'chat.completion');
    assert.equal(l.error, null);
  }
  const errors = await jsonl(done.error_file_id);
  assert.deepEqual(errors.map((l) => [l.custom_id, l.response.status_code, l.response.body.error.code]), [['b', 404, 'model_not_found']]);

  const outputFile = await client.files.retrieve(done.output_file_id);
  assert.equal(outputFile.purpose, 'batch_output');

  const listed = [];
  for await (const batch of client.batches.list({ limit: 1 })) listed.push(batch.id);
  assert.ok(listed.includes(created.id));
});

test('a batch over an invalid file fails with errors by line', async () => {
  const file = await upload([line('x', { model: 'gpud-tiny', prompt: 'p' }, '/v1/completions'), 'not json']);
  const created = await client.batches.create({ input_file_id: file.id, endpoint: '/v1/completions', completion_window: '24h' });
  const failed = await until(created.id, ['failed', 'completed']);
  assert.equal(failed.status, 'failed');
  assert.deepEqual(failed.errors.data.map((e) => [e.code, e.line]), [['invalid_json_line', 2]]);
});

test('cancel, and the errors a bad create gets', async () => {
  const lines = Array.from({ length: 300 }, (_, i) => line(`q${i}`, { model: 'gpud-tiny', prompt: `n ${i}`, max_tokens: 64 }, '/v1/completions'));
  const file = await upload(lines);
  const created = await client.batches.create({ input_file_id: file.id, endpoint: '/v1/completions', completion_window: '24h' });
  const cancelling = await client.batches.cancel(created.id);
  assert.ok(['cancelling', 'cancelled'].includes(cancelling.status));
  const cancelled = await until(created.id, ['cancelled']);
  assert.ok(cancelled.request_counts.completed < 300);

  const err = await client.batches.create({ input_file_id: file.id, endpoint: '/v1/embeddings', completion_window: '24h' }).catch((e) => e);
  assert.ok(err instanceof BadRequestError);
  assert.equal(err.param, 'endpoint');
});
