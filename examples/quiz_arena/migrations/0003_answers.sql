CREATE TABLE answers (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    question_id bigint NOT NULL REFERENCES questions (id) ON DELETE CASCADE,
    user_id bigint NOT NULL REFERENCES users (id),
    chosen_option int NOT NULL,
    is_correct boolean NOT NULL,
    answered_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX answers_user_idx ON answers (user_id, answered_at);

CREATE TABLE scores (
    user_id bigint PRIMARY KEY REFERENCES users (id),
    points int NOT NULL DEFAULT 0,
    streak int NOT NULL DEFAULT 0,
    updated_at timestamptz NOT NULL DEFAULT now()
);
