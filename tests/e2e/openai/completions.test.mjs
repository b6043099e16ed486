// /v1/completions (the legacy API) and the /tokenize, /detokenize helpers, with stories260K.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';

import { assertUsage, chatModel, client, postJson } from './helpers.mjs';

const openai = client();
const prompt = 'Once upon a time, there was a';

describe('completions', () => {
  test('a string prompt', async () => {
    const r = await openai.completions.create({ model: chatModel, prompt, max_tokens: 8, temperature: 0 });
    assert.equal(r.object, 'text_completion');
    assert.match(r.id, /^cmpl-/);
    assert.equal(r.model, chatModel);
    assert.equal(r.choices.length, 1);
    assert.equal(r.choices[0].index, 0);
    assert.equal(typeof r.choices[0].text, 'string');
    assert.ok(r.choices[0].text.length > 0);
    assert.ok(['stop', 'length'].includes(r.choices[0].finish_reason));
    assert.equal(r.choices[0].logprobs, null);
    assertUsage(r.usage);
    if (r.choices[0].finish_reason === 'length') assert.equal(r.usage.completion_tokens, 8);
  });

  test('a token prompt gives what its text gives', async () => {
    const tokenized = await postJson('/tokenize', { model: chatModel, prompt });
    assert.ok(Array.isArray(tokenized.tokens) && tokenized.tokens.length > 0);
    assert.equal(tokenized.count, tokenized.tokens.length);
    assert.ok(tokenized.max_model_len > 0);
    const byText = await openai.completions.create({ model: chatModel, prompt, max_tokens: 8, temperature: 0 });
    const byTokens = await openai.completions.create({
      model: chatModel, prompt: tokenized.tokens, max_tokens: 8, temperature: 0,
    });
    assert.equal(byTokens.choices[0].text, byText.choices[0].text);
    assert.equal(byTokens.usage.prompt_tokens, tokenized.count);
    assert.equal(byText.usage.prompt_tokens, tokenized.count);

    // Several token prompts: one choice each, in order.
    const two = await openai.completions.create({
      model: chatModel, prompt: [tokenized.tokens, tokenized.tokens.slice(0, 3)], max_tokens: 4, temperature: 0,
    });
    assert.deepEqual(two.choices.map((c) => c.index), [0, 1]);
  });

  test('detokenize inverts tokenize', async () => {
    const { tokens } = await postJson('/tokenize', { model: chatModel, prompt, add_special_tokens: false });
    const back = await postJson('/detokenize', { model: chatModel, tokens });
    assert.equal(back.prompt.trim(), prompt);
  });

  test('tokenize a conversation', async () => {
    const r = await postJson('/tokenize', {
      model: chatModel, messages: [{ role: 'user', content: 'Hi' }], add_generation_prompt: true,
    });
    assert.ok(r.count > 1);
  });

  test('streaming gives the same text', async () => {
    const full = await openai.completions.create({ model: chatModel, prompt, max_tokens: 12, temperature: 0 });
    const stream = await openai.completions.create({
      model: chatModel, prompt, max_tokens: 12, temperature: 0, stream: true,
      stream_options: { include_usage: true },
    });
    let text = '';
    const chunks = [];
    for await (const chunk of stream) {
      chunks.push(chunk);
      for (const c of chunk.choices) text += c.text;
    }
    assert.equal(text, full.choices[0].text);
    for (const c of chunks) assert.equal(c.object, 'text_completion');
    const finishes = chunks.flatMap((c) => c.choices).filter((c) => c.finish_reason !== null);
    assert.equal(finishes.length, 1);
    assert.deepEqual(chunks.at(-1).choices, []);
    assert.deepEqual(chunks.at(-1).usage, full.usage);
  });

  test('legacy logprobs', async () => {
    const r = await openai.completions.create({
      model: chatModel, prompt, max_tokens: 6, temperature: 0, logprobs: 2,
    });
    const lp = r.choices[0].logprobs;
    assert.equal(lp.tokens.length, r.usage.completion_tokens);
    assert.equal(lp.token_logprobs.length, lp.tokens.length);
    assert.equal(lp.top_logprobs.length, lp.tokens.length);
    assert.equal(lp.text_offset.length, lp.tokens.length);
    for (let i = 0; i < lp.tokens.length; i++) {
      assert.ok(lp.token_logprobs[i] <= 0);
      const alternatives = Object.values(lp.top_logprobs[i]);
      assert.ok(alternatives.length >= 1 && alternatives.length <= 3, JSON.stringify(lp.top_logprobs[i]));
      if (i > 0) assert.ok(lp.text_offset[i] >= lp.text_offset[i - 1]);
    }
    assert.equal(lp.tokens.join(''), r.choices[0].text);
  });

  test('echo returns the prompt before the completion', async () => {
    const r = await openai.completions.create({ model: chatModel, prompt, max_tokens: 4, temperature: 0, echo: true });
    assert.ok(r.choices[0].text.startsWith(prompt), JSON.stringify(r.choices[0].text));
  });

  test('max_tokens and stop', async () => {
    const base = await openai.completions.create({ model: chatModel, prompt, max_tokens: 24, temperature: 0 });
    const text = base.choices[0].text;
    const short = await openai.completions.create({ model: chatModel, prompt, max_tokens: 2, temperature: 0 });
    assert.equal(short.choices[0].finish_reason, 'length');
    assert.equal(short.usage.completion_tokens, 2);
    assert.ok(text.startsWith(short.choices[0].text));
    assert.ok(text.length >= 10, JSON.stringify(text));
    const stop = text.slice(6, 9);
    const cut = await openai.completions.create({ model: chatModel, prompt, max_tokens: 24, temperature: 0, stop });
    assert.equal(cut.choices[0].text, text.slice(0, text.indexOf(stop)));
    assert.equal(cut.choices[0].finish_reason, 'stop');
  });
});
