// The Files API as the official OpenAI Node SDK uses it. GPUD_BASE_URL points at a running gpud (SdkTests starts one).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import OpenAI, { toFile, NotFoundError, BadRequestError, AuthenticationError } from 'openai';

const baseURL = process.env.GPUD_BASE_URL ?? 'http://127.0.0.1:8080/v1';
const client = new OpenAI({ baseURL, apiKey: process.env.GPUD_API_KEY ?? 'sk-local', maxRetries: 0 });

const chat = (n) => Array.from({ length: n }, (_, i) => JSON.stringify({
  messages: [
    { role: 'system', content: 'Answer with one word.' },
    { role: 'user', content: `Question ${i}: naïve café 😀?` },
    { role: 'assistant', content: `answer-${i}` },
  ],
})).join('\n') + '\n';

test('upload, retrieve, download, list to the end, delete', async () => {
  const bytes = Buffer.from(chat(12), 'utf8');
  const created = await client.files.create({ file: await toFile(bytes, 'train.jsonl'), purpose: 'fine-tune' });
  assert.match(created.id, /^file-/);
  assert.equal(created.object, 'file');
  assert.equal(created.bytes, bytes.length);
  assert.equal(created.filename, 'train.jsonl');
  assert.equal(created.purpose, 'fine-tune');

  const processed = await client.files.waitForProcessing(created.id, { pollInterval: 50, maxWait: 10_000 });
  assert.equal(processed.status, 'processed');

  const retrieved = await client.files.retrieve(created.id);
  assert.deepEqual(retrieved, processed);

  const content = await client.files.content(created.id);
  assert.deepEqual(Buffer.from(await content.arrayBuffer()), bytes);

  // More files than one page holds, iterated with the SDK's auto-pagination (after=<last id> until has_more=false).
  const ids = [created.id];
  for (let i = 0; i < 4; i++) ids.push((await client.files.create({ file: await toFile(Buffer.from(chat(1)), `f${i}.jsonl`), purpose: 'fine-tune' })).id);
  const listed = [];
  for await (const file of client.files.list({ limit: 2, order: 'asc' })) listed.push(file.id);
  assert.deepEqual(listed.filter((id) => ids.includes(id)), ids);

  const deleted = await client.files.delete(created.id);
  assert.deepEqual(deleted, { id: created.id, object: 'file', deleted: true });
  await assert.rejects(client.files.retrieve(created.id), (e) => e instanceof NotFoundError && e.status === 404 && e.param === 'id');
});

test('an invalid training line gives status error naming that line', async () => {
  const body = chat(2) + JSON.stringify({ messages: [{ role: 'user', content: 'no answer' }] }) + '\n';
  const file = await client.files.create({ file: await toFile(Buffer.from(body), 'bad.jsonl'), purpose: 'fine-tune' });
  assert.equal(file.status, 'error');
  assert.match(file.status_details, /^Line 3: example_missing_assistant_message/);
});

test('errors surface as the SDK\'s typed errors with status, param and request id', async () => {
  const err = await client.files.create({ file: await toFile(Buffer.from('x'), 'a.txt'), purpose: 'homework' }).catch((e) => e);
  assert.ok(err instanceof BadRequestError);
  assert.equal(err.status, 400);
  assert.equal(err.param, 'purpose');
  assert.match(err.requestID, /^req_/);
});

test('a wrong key is an AuthenticationError when keys are configured', { skip: !process.env.GPUD_API_KEY }, async () => {
  const wrong = new OpenAI({ baseURL, apiKey: 'sk-wrong-key-000000', maxRetries: 0 });
  const err = await wrong.files.list().catch((e) => e);
  assert.ok(err instanceof AuthenticationError);
  assert.equal(err.code, 'invalid_api_key');
});

test('uploads: a file sent in parts (out of order), completed with its md5, becomes a checked file', async () => {
  const { createHash } = await import('node:crypto');
  const bytes = Buffer.from(chat(15), 'utf8');
  const upload = await client.uploads.create({ filename: 'big.jsonl', purpose: 'fine-tune', bytes: bytes.length, mime_type: 'application/jsonl' });
  assert.equal(upload.status, 'pending');
  const cut = Math.floor(bytes.length / 2);
  const [second, first] = await Promise.all([
    client.uploads.parts.create(upload.id, { data: await toFile(bytes.subarray(cut), 'p2') }),
    client.uploads.parts.create(upload.id, { data: await toFile(bytes.subarray(0, cut), 'p1') }),
  ]);
  assert.equal(first.object, 'upload.part');
  const md5 = createHash('md5').update(bytes).digest('hex');
  const done = await client.uploads.complete(upload.id, { part_ids: [first.id, second.id], md5 });
  assert.equal(done.status, 'completed');
  assert.equal(done.file.status, 'processed');
  assert.deepEqual(Buffer.from(await (await client.files.content(done.file.id)).arrayBuffer()), bytes);

  const other = await client.uploads.create({ filename: 'x.jsonl', purpose: 'fine-tune', bytes: 10, mime_type: 'application/jsonl' });
  assert.equal((await client.uploads.cancel(other.id)).status, 'cancelled');
  const err = await client.uploads.complete(other.id, { part_ids: [first.id] }).catch((e) => e);
  assert.ok(err instanceof BadRequestError);
  assert.equal(err.code, 'invalid_upload_state');
});
