// Errors reach the client as the SDK's error classes, with OpenAI's codes and params.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';

import OpenAI from 'openai';

import { chatModel, client } from './helpers.mjs';

const openai = client();
const messages = [{ role: 'user', content: 'Hi' }];

describe('errors', () => {
  test('an unknown model is NotFoundError with code model_not_found', async () => {
    await assert.rejects(
      openai.chat.completions.create({ model: 'nobody/no-such-model', messages }),
      (err) => {
        assert.ok(err instanceof OpenAI.NotFoundError, String(err));
        assert.equal(err.status, 404);
        assert.equal(err.code, 'model_not_found');
        return true;
      },
    );
    await assert.rejects(
      openai.completions.create({ model: 'nobody/no-such-model', prompt: 'x' }),
      OpenAI.NotFoundError,
    );
  });

  test('a bad key is AuthenticationError', async () => {
    const bad = client({ apiKey: `yz-${'x'.repeat(40)}` });
    await assert.rejects(bad.chat.completions.create({ model: chatModel, messages }), (err) => {
      assert.ok(err instanceof OpenAI.AuthenticationError, String(err));
      assert.equal(err.status, 401);
      return true;
    });
    await assert.rejects(bad.models.list(), OpenAI.AuthenticationError);
  });

  test('bad parameters are BadRequestError naming the parameter', async () => {
    const cases = [
      [{ model: chatModel, messages, temperature: 'hot' }, 'temperature'],
      [{ model: chatModel, messages, n: 0 }, 'n'],
      [{ model: chatModel, messages: [] }, 'messages'],
      [{ model: chatModel, messages, top_logprobs: 3 }, 'top_logprobs'],
      [{ model: chatModel, messages: [{ role: 'user', content: [{ type: 'image_url', image_url: { url: 'http://x/y.png' } }] }] },
        'messages[0].content[0].type'],
      [{ model: chatModel, messages, stop: ['a', 'b', 'c', 'd', 'e'] }, 'stop'],
    ];
    for (const [body, param] of cases) {
      await assert.rejects(openai.chat.completions.create(body), (err) => {
        assert.ok(err instanceof OpenAI.BadRequestError, `${param}: ${err}`);
        assert.equal(err.status, 400);
        assert.equal(err.param, param);
        assert.equal(err.type, 'invalid_request_error');
        return true;
      });
    }
    await assert.rejects(
      openai.completions.create({ model: chatModel, prompt: 'x', best_of: 3 }),
      (err) => err instanceof OpenAI.BadRequestError && err.param === 'best_of',
    );
  });

  test('a streamed request with a bad parameter fails before streaming', async () => {
    await assert.rejects(
      openai.chat.completions.create({ model: chatModel, messages, temperature: 5, stream: true }),
      OpenAI.BadRequestError,
    );
  });
});
