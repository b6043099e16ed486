// /v1/models lists the imported models.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';

import OpenAI from 'openai';

import { chatModel, client, tinyModel } from './helpers.mjs';

const openai = client();

describe('models', () => {
  test('models.list contains the imported models', async () => {
    const ids = [];
    for await (const model of openai.models.list()) {
      assert.equal(model.object, 'model');
      assert.ok(Number.isInteger(model.created));
      assert.equal(typeof model.owned_by, 'string');
      ids.push(model.id);
    }
    assert.ok(ids.includes(chatModel), JSON.stringify(ids));
    assert.ok(ids.includes(tinyModel), JSON.stringify(ids));
  });

  test('models.retrieve finds one and 404s on another', async () => {
    const m = await openai.models.retrieve(chatModel);
    assert.equal(m.id, chatModel);
    await assert.rejects(openai.models.retrieve('nobody/nothing'), OpenAI.NotFoundError);
  });
});
