CREATE TYPE difficulty AS ENUM ('easy', 'medium', 'hard');

CREATE TABLE quizzes (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    title text NOT NULL,
    difficulty difficulty NOT NULL DEFAULT 'medium',
    settings jsonb NOT NULL DEFAULT '{}',
    created_by bigint REFERENCES users (id),
    created_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE questions (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    quiz_id bigint NOT NULL REFERENCES quizzes (id) ON DELETE CASCADE,
    position int NOT NULL,
    body text NOT NULL,
    options jsonb NOT NULL,
    correct_option int NOT NULL,
    UNIQUE (quiz_id, position)
);
