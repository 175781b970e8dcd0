// A picture's page: its "Copy link" button. Without this script the link is
// still there, in a field to select and copy by hand.
(() => {
  'use strict';

  const field = document.getElementById('link');
  const button = document.getElementById('copy-link');
  const said = document.getElementById('copied');

  /** Copy text: the Clipboard API where the page may use it, else a selection. */
  async function copy(text, fallbackField) {
    try {
      await navigator.clipboard.writeText(text);
      return true;
    } catch {
      // Not a secure context (plain http on another host), or refused.
      fallbackField.focus();
      fallbackField.select();
      try {
        return document.execCommand('copy');
      } catch {
        return false;
      }
    }
  }

  button.hidden = false;
  button.addEventListener('click', async () => {
    const copied = await copy(field.value, field);
    said.textContent = copied ? 'Link copied.' : 'Press Ctrl+C (⌘C) to copy the selected link.';
  });
  field.addEventListener('focus', () => field.select());
})();
