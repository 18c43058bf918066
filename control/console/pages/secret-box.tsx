/** A secret shown once (service token, enrollment token): selectable without JavaScript, a copy button with it. */
export function SecretBox(props: { id: string; label: string; value: string; hint?: string }) {
  return (
    <div class="secret" role="status">
      <label for={props.id}>
        <strong>{props.label}</strong>. It is shown only now: copy it.
      </label>
      <input id={props.id} readonly value={props.value} />
      <button type="button" class="plain" data-copy={props.id} hidden>
        Copy
      </button>
      {props.hint ? <p class="hint">{props.hint}</p> : null}
    </div>
  );
}
