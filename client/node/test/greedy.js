'use strict';
// The whole text of a greedy Generate over gRPC (this package's Client, or a Session of it), with
// the held-back tail: what the HTTP tests hold the OpenAI API and the playground to.
async function greedyText(target, prompt, maxTokens, stop = []) {
  const generation = target.generate(prompt, { temperature: 0, maxTokens, stop });
  let text = '';
  for await (const piece of generation) text += piece;
  return { text: text + (generation.finished.textTail || ''), generation };
}

module.exports = { greedyText };
