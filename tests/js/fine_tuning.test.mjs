// The fine-tuning workflow as the official OpenAI Node SDK drives it: upload, create, poll, events, checkpoints.
// GPUD_BASE_URL points at a running gpud with gpud-tiny on the CPU (OpenAiSdkTests starts one).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import OpenAI, { toFile, BadRequestError, NotFoundError } from 'openai';

const baseURL = process.env.GPUD_BASE_URL ?? 'http://127.0.0.1:8080/v1';
const client = new OpenAI({ baseURL, apiKey: process.env.GPUD_API_KEY ?? 'sk-local', maxRetries: 0 });

const capitals = ['Paris', 'Rome', 'Madrid', 'Berlin', 'Lisbon', 'Vienna', 'Prague', 'Warsaw', 'Athens', 'Dublin',
  'Oslo', 'Bern', 'Riga', 'Sofia', 'Kyiv', 'Tallinn', 'Vilnius', 'Zagreb', 'Minsk', 'Baku'];
const wrong = (i) => capitals[(i + 7) % capitals.length];
const preferences = capitals.map((answer, i) => JSON.stringify({
  input: { messages: [{ role: 'user', content: `Capital #${i}?` }] },
  preferred_output: [{ role: 'assistant', content: answer }],
  non_preferred_output: [{ role: 'assistant', content: wrong(i) }],
})).join('\n') + '\n';
const jsonl = capitals.map((answer, i) => JSON.stringify({
  messages: [{ role: 'user', content: `Capital #${i}?` }, { role: 'assistant', content: answer }],
})).join('\n') + '\n';

async function waitFor(id, done) {
  for (let i = 0; i < 1200; i++) {
    const job = await client.fineTuning.jobs.retrieve(id);
    if (done(job)) return job;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`job ${id} did not finish`);
}

test('files.create -> fineTuning.jobs.create -> retrieve until succeeded -> events and checkpoints to the end', async () => {
  const file = await client.files.create({ file: await toFile(Buffer.from(jsonl), 'capitals.jsonl'), purpose: 'fine-tune' });
  const created = await client.fineTuning.jobs.create({
    model: 'gpud-tiny',
    training_file: file.id,
    suffix: 'sdk',
    seed: 42,
    metadata: { run: 'sdk-test' },
    method: { type: 'supervised', supervised: { hyperparameters: { n_epochs: 2, batch_size: 4, lora_r: 8, lora_alpha: 16 } } },
  });
  assert.match(created.id, /^ftjob-/);
  assert.equal(created.object, 'fine_tuning.job');
  assert.equal(created.status, 'validating_files');
  assert.equal(created.method.supervised.hyperparameters.lora_r, 8);

  const job = await waitFor(created.id, (j) => ['succeeded', 'failed', 'cancelled'].includes(j.status));
  assert.equal(job.status, 'succeeded', JSON.stringify(job.error));
  assert.equal(job.fine_tuned_model, `ft:gpud-tiny:gpud:sdk:${job.id}`);
  assert.equal(job.hyperparameters.n_epochs, 2);
  assert.ok(job.trained_tokens > 0);
  assert.equal(job.result_files.length, 1);

  // The SDK's iterators follow `after` until has_more is false; small pages make them do it.
  const events = [];
  for await (const event of client.fineTuning.jobs.listEvents(job.id, { limit: 3 })) events.push(event);
  assert.equal(new Set(events.map((e) => e.id)).size, events.length);
  assert.equal(events.at(-1).message, `Created fine-tuning job: ${job.id}`);
  assert.equal(events[0].message, 'The job has successfully completed');
  const metrics = events.filter((e) => e.type === 'metrics');
  assert.ok(metrics.length >= 1);
  assert.equal(metrics[0].data.step, 10);
  assert.equal(typeof metrics[0].data.train_loss, 'number');

  const checkpoints = [];
  for await (const checkpoint of client.fineTuning.jobs.checkpoints.list(job.id, { limit: 1 })) checkpoints.push(checkpoint);
  assert.deepEqual(checkpoints.map((c) => c.step_number), [10, 5]);
  assert.equal(checkpoints[0].fine_tuned_model_checkpoint, `${job.fine_tuned_model}:ckpt-step-10`);
  assert.equal(checkpoints[0].metrics.step, 10);

  const results = await (await client.files.content(job.result_files[0])).text();
  assert.equal(results.split('\n')[0], 'step,train_loss,train_accuracy,valid_loss,valid_mean_token_accuracy');

  const listed = [];
  for await (const j of client.fineTuning.jobs.list({ metadata: { run: 'sdk-test' } })) listed.push(j.id);
  assert.deepEqual(listed, [job.id]);
});

test('pause and resume a queued job, cancel it; invalid requests are typed errors', async () => {
  const file = await client.files.create({ file: await toFile(Buffer.from(jsonl), 'capitals.jsonl'), purpose: 'fine-tune' });
  const long = await client.fineTuning.jobs.create({ model: 'gpud-tiny', training_file: file.id, hyperparameters: { n_epochs: 40, batch_size: 2 } });
  const second = await client.fineTuning.jobs.create({ model: 'gpud-tiny', training_file: file.id });
  await waitFor(second.id, (j) => j.status === 'queued');

  const paused = await client.fineTuning.jobs.pause(second.id);
  assert.equal(paused.status, 'paused');
  const resumed = await client.fineTuning.jobs.resume(second.id);
  assert.equal(resumed.status, 'queued');
  for (const id of [second.id, long.id]) assert.equal((await client.fineTuning.jobs.cancel(id)).status, 'cancelled');

  await assert.rejects(client.fineTuning.jobs.cancel(second.id), (e) =>
    e instanceof BadRequestError && e.status === 400 && e.code === 'invalid_job_state' && e.param === 'id' && !!e.requestID);
  await assert.rejects(client.fineTuning.jobs.create({ model: 'gpud-tiny', training_file: file.id, method: { type: 'reinforcement' } }),
    (e) => e instanceof BadRequestError && e.param === 'method.type');
  await assert.rejects(client.fineTuning.jobs.create({ model: 'gpud-tiny', training_file: file.id, method: { type: 'dpo', dpo: { hyperparameters: { beta: 3 } } } }),
    (e) => e instanceof BadRequestError && e.param === 'method.dpo.hyperparameters.beta');
  await assert.rejects(client.fineTuning.jobs.create({ model: 'no-such-model', training_file: file.id }),
    (e) => e instanceof NotFoundError && e.code === 'model_not_found' && e.param === 'model');
  await assert.rejects(client.fineTuning.jobs.retrieve('ftjob-doesnotexist'), (e) => e instanceof NotFoundError);
});

test('DPO: preference pairs train through method.dpo and the model is served', async () => {
  const file = await client.files.create({ file: await toFile(Buffer.from(preferences), 'preferences.jsonl'), purpose: 'fine-tune' });
  const created = await client.fineTuning.jobs.create({
    model: 'gpud-tiny',
    training_file: file.id,
    suffix: 'dpo',
    method: { type: 'dpo', dpo: { hyperparameters: { beta: 0.2, n_epochs: 2, batch_size: 5 } } },
  });
  assert.equal(created.method.type, 'dpo');
  const job = await waitFor(created.id, (j) => ['succeeded', 'failed', 'cancelled'].includes(j.status));
  assert.equal(job.status, 'succeeded', JSON.stringify(job.error));
  assert.equal(job.method.dpo.hyperparameters.beta, 0.2);
  assert.equal(job.method.supervised, undefined);

  const events = [];
  for await (const event of client.fineTuning.jobs.listEvents(job.id)) events.push(event);
  const last = events.find((e) => e.type === 'metrics');
  assert.equal(last.data.step, 8);
  assert.equal(typeof last.data.train_reward_accuracy, 'number');

  const answer = await client.chat.completions.create({ model: job.fine_tuned_model, messages: [{ role: 'user', content: 'Capital #0?' }], max_tokens: 4 });
  assert.equal(answer.model, job.fine_tuned_model);
});
