-- Promotion, governance and change import all ask for a service's deployments in an environment
-- (`service_id` and `environment_id` in the body). Without an index each ask parsed every
-- deployment body: about 40 ms at 2,000 deployments of 10 KB, three times per promotion, inside
-- the promotion's write transaction. The queries name the kind and the body fields as literals,
-- so that they match this partial expression index (`queries::push_kind_filter`).
CREATE INDEX resources_deployment_service_environment
    ON resources (json_extract(body, '$.service_id'), json_extract(body, '$.environment_id'), seq)
    WHERE kind = 'deployment';
