-- Promotion, governance and change import all ask for a service's deployments in an environment
-- (`service_id` and `environment_id` in the body). Without an index each ask read and
-- decompressed every deployment body, inside the promotion's write transaction. The queries name
-- the kind and the body fields as literals, so that they match this partial expression index
-- (`queries::push_kind_filter`).
CREATE INDEX resources_deployment_service_environment
    ON resources ((body ->> 'service_id'), (body ->> 'environment_id'), seq)
    WHERE kind = 'deployment';
